"""The runner of the docs' examples catches what a reader would: wrong output, a failing command."""

from __future__ import annotations

import os
from pathlib import Path

from tests.docs.examples import Shell, blocks, commands, missing_output

PAGE = """\
Text.

```console
$ printf 'one\\ntwo\\n' \\
    && echo three
one
...
three
$ cat > notes.txt <<'EOF'
$ not a command
EOF
$ false
[exit 1]
```

!!! note
    ```python title="pkg/mod.py"
    VALUE = 1
    ```
"""


def test_blocks_commands_and_heredocs_are_read_as_a_reader_sees_them() -> None:
    found = blocks(PAGE, "page.md")
    assert [(b.language, b.title, b.line) for b in found] == [
        ("console", None, 3),
        ("python", "pkg/mod.py", 17),
    ]
    assert found[1].text == "VALUE = 1\n"
    listed = commands(found[0])
    assert [c.text.splitlines()[0] for c in listed] == [
        "printf 'one\\ntwo\\n' \\",
        "cat > notes.txt <<'EOF'",
        "false",
    ]
    assert listed[1].text.endswith("$ not a command\nEOF")
    assert [c.status for c in listed] == [0, 0, 1]


def test_output_must_appear_in_order_with_ellipses() -> None:
    printed = "start\nPASS  model v1: 3 rows\nend\n"
    assert missing_output(["PASS  model ...: 3 rows", "end"], printed) is None
    assert missing_output(["end", "start"], printed) == "start"
    assert missing_output(["PASS  model v2: ..."], printed) == "PASS  model v2: ..."


def test_the_shell_keeps_folder_and_variables_between_commands(tmp_path: Path) -> None:
    shell = Shell(tmp_path, dict(os.environ))
    try:
        assert shell.run("mkdir sub && cd sub && NAME=reader", 10) == (0, "")
        assert shell.run("echo $NAME; pwd", 10) == (0, f"reader\n{tmp_path / 'sub'}")
        assert shell.cwd == tmp_path / "sub"
        status, printed = shell.run("echo oops >&2; exit_code=3; (exit $exit_code)", 10)
        assert (status, printed) == (3, "oops")
        assert shell.run("read line; echo got:$line", 10) == (0, "got:")  # no stdin to steal
    finally:
        shell.close()
