"""What every script shares: logging, flag parsing, the shared flags (each defined once, here)
and one `error: ...` line per user mistake.

    cli.define_run_flags(); cli.define_decoding_flags()   # at import: the flags a script takes
    if __name__ == "__main__":
        app.run(cli.main(run), flags_parser=cli.parse_flags)

A user mistake (a JaxattnError, an unreadable file, a bad flag or --config file) ends in one
line on stderr and a non-zero exit status: 2 for usage errors, 1 otherwise, 130 when
interrupted. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno as errno_lib
import importlib.machinery
import importlib.util
import logging
import os
import re
import socket
import sys
import threading
import traceback

from absl import flags

from jaxattn.errors import ConfigError, JaxattnError, TrainingError, UsageError, first_line
from jaxattn.rundir.layout import AVERAGED, EMA

USAGE_EXIT, ERROR_EXIT, INTERRUPTED_EXIT = 2, 1, 130


# ------------------------------------------------------------------------ shared flags
FLAGS = flags.FLAGS


ENSEMBLE_HELP = "; several, comma-separated: an ensemble (the same vocabularies)"


def define_run_flags(*, workdir: bool = True, ensemble: bool = False) -> None:
    """--workdir (required; `workdir=False`: the script names its runs otherwise) and
    --checkpoint; `ensemble`: several runs, comma-separated, decode as one (`run_specs`)."""
    if workdir:
        flags.DEFINE_string(
            "workdir",
            None,
            "A training run's directory" + (ENSEMBLE_HELP if ensemble else "") + ".",
        )
        flags.mark_flag_as_required("workdir")
    flags.DEFINE_string(
        "checkpoint",
        "latest",
        f"'latest', 'best', '{AVERAGED}' "
        f"(scripts/average.py), '{EMA}' (the EMA weights, train.ema_decay) or a step number"
        + ("; for several runs one for all, or one each, comma-separated" if ensemble else "")
        + ".",
    )


def define_decoding_flags() -> None:
    """A --NAME flag for each decoding option, from its row of the one table
    (jaxattn.search.options.OPTIONS: type, choices, help), then --max_len, --batch_size,
    unknown-word replacement (--replace_unk, --unk_dictionary) and input limits
    (--max_input_len, --truncate_long); unset: the run's config.eval values or DecodeOptions'
    defaults (`decoding_options` reads them back)."""
    from jaxattn.search.options import OPTIONS  # jax: only for the scripts that decode

    for o in OPTIONS.values():
        if o.choices:
            flags.DEFINE_enum(o.name, None, list(o.choices), o.help, flag_values=FLAGS)
        else:
            _DEFINE[o.kind](o.name, None, o.help, flag_values=FLAGS)
    flags.DEFINE_integer(
        "max_len",
        None,
        "Decoding steps; default: the run's config.eval.max_decode_len, more for long sentences.",
        flag_values=FLAGS,
    )
    flags.DEFINE_integer(
        "batch_size",
        None,
        "Sentences a batch; default: the run's config.eval.batch_size (or batches of "
        "config.eval.batch_tokens padded source positions, when set).",
        flag_values=FLAGS,
    )
    flags.DEFINE_bool(
        "replace_unk",
        False,
        "Replace each output <unk> by the source word "
        "attended most at that step (word-level runs with an <unk> token).",
        flag_values=FLAGS,
    )
    flags.DEFINE_string(
        "unk_dictionary",
        None,
        "With --replace_unk: a 'source<TAB>target' "
        "file mapping the attended source word to its replacement.",
        flag_values=FLAGS,
    )
    # input limits (jaxattn.inference.eval_input.limit_options turns them into Translator keywords)
    flags.DEFINE_integer(
        "max_input_len",
        None,
        "The longest input sentence, in tokens; "
        "default: twice the longest training sentence (the run's "
        "data_stats.json).",
        flag_values=FLAGS,
    )
    flags.DEFINE_bool(
        "truncate_long",
        False,
        "Cut sentences over the input limit to it, "
        "with a warning, instead of stopping with an error.",
        flag_values=FLAGS,
    )


_DEFINE = {int: flags.DEFINE_integer, float: flags.DEFINE_float}  # an option's type -> its flag


def search_flags() -> list[str]:
    """The names of the decoding option flags (`define_decoding_flags`), in table order."""
    from jaxattn.search.options import OPTIONS

    return list(OPTIONS)


def check_decoding_flags() -> None:
    """UsageError (OptionError for an option), before any work, for a decoding flag out of
    its option's range ('--beam_size must be >= 1, got 0.') or a --max_len or --batch_size
    below 1. How the options combine is checked by `decoding_options`, once the run's
    defaults are known."""
    from jaxattn.search.options import OPTIONS

    for o in OPTIONS.values():
        if FLAGS[o.name].value is not None:
            o.check(FLAGS[o.name].value, name=f"--{o.name}", typed=False, none=False)
    check_positive("max_len", "batch_size")


def define_eval_data_flags() -> None:
    """Where evaluation sentences come from (--split | --src/--ref | --tsv, --data_path), and
    --json, --warmup."""
    flags.DEFINE_string(
        "split",
        None,
        "A split of the run's corpus: test (the default without --src/--tsv), validation or train.",
    )
    flags.DEFINE_string("src", None, "Source sentences, one a line (UTF-8).")
    flags.DEFINE_string("ref", None, "Reference translations, aligned with --src.")
    flags.DEFINE_string(
        "tsv",
        None,
        "Sentence pairs, 'source<TAB>target' a line; for the "
        "tutorial corpus its own format, English<TAB>French.",
    )
    flags.DEFINE_string(
        "data_path",
        None,
        "With --split: the corpus, if it is no longer at the run's config.data.path.",
    )
    flags.DEFINE_string("json", None, "Write the JSON result here.")
    flags.DEFINE_bool("warmup", True, "Compile before timing (sentences/s without compilation).")


def define_config_flag(
    name: str = "config", help_text: str = "Config file (configs/*.py).", *, required: bool = True
):
    """An ml_collections config-file flag (`--config=FILE[:ARG]`, `--config.a.b=value`
    overrides) whose file is loaded by `_ConfigFileParser`: a file that is missing, does
    not compile, has no get_config(), or whose get_config() raises or returns None ends in one
    'error: --config: FILE ...' line (see `parse_flags`). Returns the flag holder."""
    from ml_collections import config_flags

    holder = config_flags.DEFINE_config_file(
        name, None, help_text, flag_values=FLAGS, lock_config=True
    )
    FLAGS[name].parser = _ConfigFileParser(name)
    if required:
        flags.mark_flag_as_required(name, flag_values=FLAGS)
    return holder


class _ConfigFileProblem(Exception):
    """A --config file that cannot give a config; deliberately not a ValueError/TypeError,
    which absl would wrap with the flag's raw value and ml_collections with a traceback."""


class _ConfigFileParser(flags.ArgumentParser):
    """Loads `FILE[:ARG]` -> get_config(ARG) as ml_collections' ConfigFileFlagParser does, but
    says in one line which file is wrong and how (`_ConfigFileProblem`)."""

    def __init__(self, name: str):
        self.name = name

    def flag_type(self) -> str:
        return "config object"

    def parse(self, argument):
        if not isinstance(argument, str):  # a ConfigDict given in Python: as ml_collections
            return argument
        path, *arg = argument.split(":", 1)
        flag = f"--{self.name}"
        if not path:
            raise _ConfigFileProblem(f"{flag} is empty; give a config file, e.g. configs/base.py.")
        if not os.path.exists(path):
            raise _ConfigFileProblem(
                f"{flag}: no such file: {path} (the shipped configs are configs/*.py)."
            )
        if not os.path.isfile(path):
            raise _ConfigFileProblem(
                f"{flag}: {path} is not a file; give a Python config file, e.g. configs/base.py."
            )
        module_name = f"{self.name}_config"
        loader = importlib.machinery.SourceFileLoader(module_name, path)
        spec = importlib.util.spec_from_loader(module_name, loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look the module up
        try:
            loader.exec_module(module)
        except SyntaxError as e:
            raise _ConfigFileProblem(
                f"{flag}: {path} line {e.lineno}: syntax error ({e.msg})."
            ) from None
        except OSError as e:
            raise _ConfigFileProblem(f"{flag}: cannot read {path} ({e.strerror or e}).") from None
        except Exception as e:  # noqa: BLE001 - the config file's own code failed
            raise _ConfigFileProblem(
                f"{flag}: {path}{_where(e, path)}: loading it failed: {first_line(e)}."
            ) from None
        get_config = getattr(module, "get_config", None)
        if not callable(get_config):
            raise _ConfigFileProblem(
                f"{flag}: {path} has no get_config() function; a config file defines "
                "get_config() returning an ml_collections.ConfigDict (see configs/base.py)."
            )
        call = f"get_config({arg[0]!r})" if arg else "get_config()"
        try:
            config = get_config(*arg)
        except Exception as e:  # noqa: BLE001 - the config file's own code failed
            raise _ConfigFileProblem(
                f"{flag}: {path}{_where(e, path)}: {call} raised {first_line(e)}."
            ) from None
        if config is None:
            raise _ConfigFileProblem(
                f"{flag}: {path}: {call} returned None; it must return "
                "an ml_collections.ConfigDict (a missing return?)."
            )
        if callable(getattr(config, "lock", None)):
            config.lock()
        return config


def _where(error: BaseException, path: str) -> str:
    """' line N': the last line of `path` the error's traceback passed through, if any."""
    lines = [
        f.lineno
        for f in traceback.extract_tb(error.__traceback__)
        if os.path.abspath(f.filename) == os.path.abspath(path)
    ]
    return f" line {lines[-1]}" if lines else ""


def define_distributed_flags() -> None:
    """--distributed=off|auto|explicit and its --coordinator_address, --num_processes,
    --process_id, --distributed_timeout (see `init_distributed`)."""
    flags.DEFINE_enum(
        "distributed",
        "off",
        ["off", "auto", "explicit"],
        "Multi-host: 'auto' "
        "lets jax.distributed detect the cluster; 'explicit' uses the three flags "
        "below.",
    )
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
    flags.DEFINE_integer("num_processes", None, "Number of processes (hosts).")
    flags.DEFINE_integer("process_id", None, "This process's index.")
    flags.DEFINE_integer(
        "distributed_timeout", 300, "Seconds to wait for every process to join the coordinator."
    )


def check_positive(*names: str) -> None:
    """UsageError for an integer flag among `names` set below 1."""
    for name in names:
        if FLAGS[name].value is not None and FLAGS[name].value < 1:
            raise UsageError(f"--{name} must be >= 1, got {FLAGS[name].value}.")


def check_outputs(*names: str, inputs: tuple[str, ...] = ()) -> None:
    """UsageError, before any work, for a flag among `names` naming a file that cannot be
    written (a directory, a missing or unwritable folder) or one of the `inputs` flags' files."""
    read = {os.path.realpath(FLAGS[i].value): i for i in inputs if FLAGS[i].value}
    for name in names:
        path = FLAGS[name].value
        if not path:
            continue
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            why = "is a directory; give a file name"
        elif not os.path.isdir(folder):
            why = f"is in a folder that does not exist ({folder}); create it first"
        elif not os.access(folder, os.W_OK | os.X_OK):
            why = f"is in a folder that is not writable ({folder})"
        elif os.path.realpath(path) in read:
            why = f"is the --{read[os.path.realpath(path)]} file: it would be overwritten"
        else:
            continue
        raise UsageError(f"--{name}={path} {why}.")


def no_arguments(argv) -> None:
    if len(argv) > 1:
        raise UsageError(f"Unexpected arguments: {argv[1:]} (options are --name=value).")


def decoding_options(default_beam_size: int) -> dict:
    """translate()/evaluate() keyword arguments from the decoding flags: options (a
    DecodeOptions from the flags given, checked; without --beam_size, `default_beam_size` if
    the method is beam or not given), max_len, batch_size, replace_unk, unk_dictionary."""
    from jaxattn.search.options import DecodeOptions

    given = {name: FLAGS[name].value for name in search_flags() if FLAGS[name].value is not None}
    return dict(
        options=DecodeOptions.make(defaults={"beam_size": default_beam_size}, **given),
        max_len=FLAGS.max_len,
        batch_size=FLAGS.batch_size,
        replace_unk=FLAGS.replace_unk,
        unk_dictionary=FLAGS.unk_dictionary,
    )


def reject_flags(names, why: str) -> None:
    """UsageError naming the flags among `names` given on the command line, with `why`."""
    given = [f"--{name}" for name in names if FLAGS[name].present]
    if given:
        raise UsageError(f"{', '.join(given)}: {why}")


def run_specs(workdirs: str) -> tuple[list[str], list[str]]:
    """(workdirs, checkpoints) of a comma-separated --workdir (several runs: an ensemble) and
    --checkpoint (one for all, or one per workdir)."""
    dirs = [w.strip() for w in workdirs.split(",") if w.strip()]
    ckpts = [c.strip() for c in FLAGS.checkpoint.split(",")]
    if not dirs:
        raise UsageError("--workdir names no run.")
    if len(ckpts) not in (1, len(dirs)) or not all(ckpts):
        raise UsageError(
            f"--checkpoint={FLAGS.checkpoint} gives {len(ckpts)} checkpoints for "
            f"{len(dirs)} workdirs: give one for all, or one per --workdir "
            "(comma-separated)."
        )
    return dirs, ckpts * len(dirs) if len(ckpts) == 1 else ckpts


def eval_data_options() -> dict:
    """eval_input.load_pairs keyword arguments from the evaluation data flags (checked)."""
    split, src, ref, tsv = FLAGS.split, FLAGS.src, FLAGS.ref, FLAGS.tsv
    given = [
        name
        for name, v in (("--split", split), ("--src/--ref", src), ("--tsv", tsv))
        if v is not None
    ]
    if ref is not None and src is None:
        raise UsageError("--ref needs --src (the sentences to translate).")
    if src is not None and ref is None:
        raise UsageError(
            "--src needs --ref (to translate without references, use scripts/translate.py)."
        )
    if len(given) > 1:
        raise UsageError(f"Give one of --split, --src/--ref and --tsv, not {' and '.join(given)}.")
    if FLAGS.data_path and (src or tsv):
        raise UsageError("--data_path goes with --split (the run's corpus).")
    return dict(split=split, src=src, ref=ref, tsv=tsv, data_path=FLAGS.data_path or "")


# ----------------------------------------------------------------------- errors, logging
def setup_logging(verbose: bool = False) -> None:
    """Plain 'warning: ...' lines on stderr for jaxattn; quiet libraries (absl, orbax)."""
    from absl import logging as absl_logging

    # Libraries' own error logs (an Orbax background save that failed, with its traceback)
    # reach the user as the one error line the failure ends in.
    absl_logging.set_verbosity(absl_logging.FATAL)
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    logger = logging.getLogger("jaxattn")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LowerLevelFormatter("%(levelname)s: %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


class _LowerLevelFormatter(logging.Formatter):
    def format(self, record):
        record.levelname = record.levelname.lower()
        return super().format(record)


def fail(message: str, code: int = ERROR_EXIT):
    """Prints the one error line and exits at once: the interpreter's teardown would print the
    complaints of library threads still running (asyncio 'Event loop is closed', ...)."""
    print(f"error: {message}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def parse_flags(argv):
    """absl's flag parser, but a bad flag, an unknown --config.* key or an unloadable --config
    file is one 'error: ...' line and exit status 2 (no traceback)."""
    try:
        rest = flags.FLAGS(argv)
    except _ConfigFileProblem as e:
        fail(str(e), USAGE_EXIT)
    except flags.Error as e:
        required = re.fullmatch(
            r"flag --(\w+)=None: Flag --\1 must have a value other than "
            r"None\.",
            str(e),
        )
        if required:  # absl's words for a required flag left out
            name = required.group(1)
            fail(
                f"--{name} is required: {flags.FLAGS[name].help}\nPass --help to see the options.",
                USAGE_EXIT,
            )
        fail(f"{e}{_config_type_hint(e)}\nPass --help to see the options.", USAGE_EXIT)
    except (AttributeError, KeyError) as e:  # ml_collections: --config.<unknown key>=...
        msg = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
        given = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")]
        key = msg.split()[0].strip("'\"") if msg else ""
        named = next((g for g in given if key and key in g.split(".")[1:]), None)
        msg = msg.replace("' Did you mean", "'. Did you mean")
        fail(
            f"{named}: unknown config key {msg} (the fields: the --config file's and "
            "jaxattn/config.py's)"
            if named
            else f"unknown config key {msg}",
            USAGE_EXIT,
        )
    except Exception as e:  # noqa: BLE001 - a --config file that does not load
        fail(f"cannot load the --config file ({first_line(e)}).", USAGE_EXIT)
    if "config" in flags.FLAGS:
        error = getattr(flags.FLAGS["config"].value, "_error", None)  # ml_collections' stand-in
        if error is not None:
            fail(
                f"cannot load --config={flags.FLAGS['config'].serialize().split('=', 1)[-1]}: "
                f"{first_line(error)}",
                USAGE_EXIT,
            )
    return rest


def _config_type_hint(error) -> str:
    """For a --config.<field> value of the wrong type: what the field holds (its default)."""
    name = str(error).removeprefix("flag --").split("=", 1)[0]
    if not name.startswith("config.") or name not in FLAGS:
        return ""
    default = FLAGS[name].default
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        type(default), f"a {type(default).__name__}"
    )
    return f"; {name} is {kind}, like its default {default!r}"


def main(run):
    """Wraps a script's run(argv) for absl's app.run: user mistakes -> one error line."""

    def wrapped(argv):
        setup_logging()
        from jaxattn.rundir.checkpointer import drop_closed_loop_reports  # orbax: on first use

        drop_closed_loop_reports()
        try:
            return run(argv)
        except ConfigError as e:
            fail(str(e), USAGE_EXIT)
        except JaxattnError as e:
            fail(str(e), getattr(e, "exit_code", ERROR_EXIT))
        except BrokenPipeError:  # e.g. | head
            sys.stderr.close()
            sys.exit(0)
        except OSError as e:  # disk full, permissions, a vanished file
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            fail(f"{str(e.strerror or e).rstrip('.')}{where}.")
        except KeyboardInterrupt as e:
            print(
                f"interrupted ({e}); rerun the same command to resume."
                if str(e)
                else "interrupted",
                file=sys.stderr,
                flush=True,
            )
            os._exit(INTERRUPTED_EXIT)

    return wrapped


def init_distributed_from_flags() -> None:
    """`init_distributed` with the values of `define_distributed_flags`' flags."""
    init_distributed(
        FLAGS.distributed,
        FLAGS.coordinator_address,
        FLAGS.num_processes,
        FLAGS.process_id,
        FLAGS.distributed_timeout,
    )


def init_distributed(
    mode: str,
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    timeout: int,
) -> None:
    """jax.distributed for --distributed=off|auto|explicit, with the flags checked first and a
    timeout that names what it waited for (JAX itself aborts with a C++ stack trace)."""
    given = {
        name: v
        for name, v in (
            ("--coordinator_address", coordinator),
            ("--num_processes", num_processes),
            ("--process_id", process_id),
        )
        if v is not None
    }
    if mode == "off" and len(given) in (1, 2):
        raise UsageError(
            f"{', '.join(given)} set without --distributed=explicit; a multi-host "
            "run needs --distributed=explicit and all three of --coordinator_address,"
            " --num_processes and --process_id."
        )
    if mode == "off" and not given:
        return
    if mode == "auto" and given:
        raise UsageError(
            f"--distributed=auto detects the cluster by itself; drop "
            f"{', '.join(given)} or use --distributed=explicit."
        )
    if mode != "auto":  # explicit (or off with all three flags, as older versions allowed)
        missing = sorted({"--coordinator_address", "--num_processes", "--process_id"} - set(given))
        if missing:
            raise UsageError(f"--distributed=explicit needs {', '.join(missing)}.")
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"--coordinator_address={coordinator!r} must be host:port.")
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise UsageError(
                f"--process_id={process_id} must be in [0, --num_processes={num_processes})."
            )
    if timeout < 1:
        raise UsageError(f"--distributed_timeout must be >= 1 second, got {timeout}.")
    if mode != "auto":
        _check_coordinator(coordinator, process_id)
    import jax

    what = (
        f"all {num_processes} processes to join the coordinator at {coordinator}"
        if mode != "auto"
        else "the cluster's processes to join"
    )

    def give_up():
        print(
            f"error: waited {timeout} s for {what}; none or not all came. Start every process "
            "with the same --coordinator_address and --num_processes and its own --process_id "
            "(0 first), or raise --distributed_timeout.",
            file=sys.stderr,
            flush=True,
        )
        os._exit(ERROR_EXIT)

    watchdog = threading.Timer(timeout, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        kwargs = (
            {}
            if mode == "auto"
            else dict(
                coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
            )
        )
        jax.distributed.initialize(initialization_timeout=timeout + 60, **kwargs)
    except (ValueError, TypeError) as e:
        if mode != "auto":
            raise
        # JAX found no cluster (no SLURM, Open MPI, Cloud TPU, ... environment) or only part
        # of one: it names the first missing value ("coordinator_address should be defined.")
        raise UsageError(
            f"--distributed=auto: no cluster detected ({str(e).rstrip('.')}). On one machine "
            "use --distributed=off (the default); on several use --distributed=explicit with "
            "--coordinator_address, --num_processes and --process_id."
        ) from None
    except jax.errors.JaxRuntimeError as e:  # e.g. the coordinator's port taken meanwhile
        raise TrainingError(
            f"jax.distributed could not start ({first_line(e)}) for "
            f"{'the detected cluster' if mode == 'auto' else f'the coordinator {coordinator}'}"
            ". Check that its port is free on process 0's host and reachable from the "
            "others."
        ) from None
    finally:
        watchdog.cancel()


def _check_coordinator(coordinator: str, process_id: int) -> None:
    """UsageError, before JAX (which aborts with a C++ stack trace or waits until the timeout),
    for a --coordinator_address whose host does not resolve, or, on process 0 (which serves
    the coordinator on every address of its host), whose port is taken."""
    host, _, port = coordinator.rpartition(":")
    host = host.strip("[]")  # [::1]:1234
    if not 0 < int(port) < 65536:
        raise UsageError(f"--coordinator_address={coordinator}: port {port} is not in 1..65535.")
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError as e:
        raise UsageError(
            f"--coordinator_address={coordinator}: cannot resolve host {host!r} "
            f"({e.strerror or e}); give process 0's host name or IP address."
        ) from None
    if process_id != 0:
        return
    for family, address in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # no IPv6 on this host: try IPv4
            continue
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is free
            try:
                probe.bind((address, int(port)))
            except OSError as e:
                if e.errno == getattr(errno_lib, "EADDRINUSE", 98):
                    raise UsageError(
                        f"--coordinator_address={coordinator}: port {port} is already in use on "
                        "this host, where process 0 serves the coordinator; choose a free port "
                        "(the same on every process)."
                    ) from None
                if e.errno == getattr(errno_lib, "EACCES", 13):
                    raise UsageError(
                        f"--coordinator_address={coordinator}: port {port} needs privileges on "
                        "this host; choose a port above 1023."
                    ) from None
                continue  # e.g. an address family the host lacks: JAX decides
        return
