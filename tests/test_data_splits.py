"""The held-out splits of a corpus without given splits are pinned: exact membership, by hash.

A corpus without given splits (the tutorial's eng-fra.txt, or one TSV file as name='parallel')
is split into train/validation/test by hashing its text (jaxattn/data/splits.py). Which pairs
are held out decides every validation and test score: if a new version assigned them
differently, its BLEU would be measured on other sentences, and results of two versions would
stop being comparable (and pairs a run trained on could land in a later version's test split).
No behavioural test notices such a change (the splits stay disjoint, grouped and sized), so
these tests pin the exact membership of a fixed corpus written here: the sha256 of the sorted
validation and test pairs and the split sizes, computed once from the code of this commit.

If one of these fails, the split assignment changed. Do not update the values unless the
change is meant to move held-out pairs; then say so in the changelog, since BLEU on such corpora
is no longer comparable across the versions.
"""

import hashlib

import pytest

from jaxattn.config import default_data_config
from jaxattn.data import build

SUBJECTS = [("i am", "je suis"), ("he is", "il est"), ("she is", "elle est")]
SUBJECTS += [("we are", "nous sommes"), ("you are", "vous êtes"), ("they are", "ils sont")]
WORDS = [
    ("tall", "grand"),
    ("happy", "heureux"),
    ("tired", "fatigué"),
    ("ready", "prêt"),
    ("hungry", "affamé"),
    ("sick", "malade"),
    ("rich", "riche"),
    ("young", "jeune"),
    ("calm", "calme"),
    ("cold", "froid"),
]
PLACES = [("here", "ici"), ("at home", "à la maison"), ("outside", "dehors"), ("", "")]


def corpus_lines() -> list[str]:
    """200 'English<TAB>French' lines that pass the tutorial's filter (prefixes, <= 10 words):
    the first 180 distinct sentences, then 20 that repeat an English sentence with another
    French one (so the grouping of shared sentences is part of what is pinned)."""
    pairs = [
        (f"{e} {a} {p}".strip() + ".", f"{f} {b} {q}".strip() + ".")
        for p, q in PLACES[:3]
        for a, b in WORDS
        for e, f in SUBJECTS
    ]  # 180 distinct
    pairs += [(e, f.replace(".", " !")) for e, f in pairs[::9]]  # 20 shared English sides
    assert len(pairs) == 200
    return [f"{e}\t{f}" for e, f in pairs]


def split_digest(data, split: str) -> str:
    """sha256 of the split's sorted (source, reference) pairs, one 'source<TAB>reference' line
    each: independent of the order a version stores them in."""
    rows = sorted(zip(data.sources(split), data.references(split), strict=True))
    return hashlib.sha256("".join(f"{s}\t{t}\n" for s, t in rows).encode()).hexdigest()


# (corpus, split_seed) -> ((train, validation, test) sizes, validation sha256, test sha256)
PINNED = {
    ("tutorial", 0): (
        (187, 2, 11),
        "8ad25402af7105905068a998227d81da9f2b8d78f6a43be325501f12301ac40d",
        "7f8bd447c82e991d914a1c4c4735a7e993bc99046ad756b86a4bda7d40f9a454",
    ),
    ("parallel", 0): (
        (182, 8, 10),
        "8808ea377e184d924ce68efbb780e137416e4a336faa838d1a453c3e51a66619",
        "cc349a0ffd5676c251d3ae401e3d72aca9740ccdb5c324445824568673e5f8ce",
    ),
    ("parallel", 7): (
        (180, 8, 12),
        "145caeb56f6805abd391873dc3df9dc7aae3e5dfb86b2568b2656188c433b2d0",
        "0928cfb999d75d136b04082c0d2efc0bd772473972b586aa80cd1da1e280e09e",
    ),
}


@pytest.mark.parametrize("name, seed", list(PINNED))
def test_split_membership_is_pinned(tmp_path, name, seed):
    path = tmp_path / ("eng-fra.txt" if name == "tutorial" else "corpus.tsv")
    path.write_text("\n".join(corpus_lines()) + "\n", encoding="utf-8")
    c = default_data_config()
    c.name, c.path, c.data_dir, c.split_seed = name, str(path), str(tmp_path / "tfds"), seed
    c.prefetch = 0
    data = build(c)
    got = (
        tuple(data.num_examples(s) for s in ("train", "validation", "test")),
        split_digest(data, "validation"),
        split_digest(data, "test"),
    )
    assert got == PINNED[(name, seed)]
