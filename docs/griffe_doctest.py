"""A griffe extension for the API reference: doctest runs (``>>>`` … up to a blank line) in
docstrings are shown as ``pycon`` code blocks instead of being read as Markdown."""

import griffe


def fence(text: str) -> str:
    out, block = [], []
    for line in text.split("\n") + [""]:
        if block and (line.strip() == ""):
            out += ["```pycon", *block, "```"]
            block = []
        if block or line.lstrip().startswith(">>>"):
            block.append(line)
        else:
            out.append(line)
    return "\n".join(out[:-1] if out and out[-1] == "" and not text.endswith("\n") else out)


class DoctestFences(griffe.Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence(obj.docstring.value)
