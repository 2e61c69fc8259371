"""mkdocs hooks: serve the repository's figures/*.png under figures/ on the site, and rewrite the
links that reach them the way they do on GitHub (``../figures/x.png`` from ``docs/``) to that place."""

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(((?:\.\./)+)figures/")


def on_files(files, config):
    for png in sorted((ROOT / "figures").glob("*.png")):
        files.append(File(f"figures/{png.name}", str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    depth = page.file.src_uri.count("/")  # docs/x.md: 0, docs/commands/x.md: 1

    def repl(m):
        ups = m.group(1).count("../")
        return f"]({'../' * depth}figures/" if ups == depth + 1 else m.group(0)

    return LINK.sub(repl, markdown)
