"""The Chinese edition's plumbing: one source of text and numbers, Sphinx gettext.

The English pages (chapters, labs' markdown cells, intro, running guide, glossary,
status page) are the source. Sphinx's gettext builder cuts them into messages
(``_build/gettext/**/*.pot``); ``locale/zh_CN/LC_MESSAGES/**/*.po`` holds one
Chinese translation per message. The Chinese build (``language: zh_CN``) parses each
English page, then swaps every paragraph for its translation and parses that again,
so a glued number ({glue:text}`...`) in a translated paragraph is looked up in the
same executed lab as on the English page: the two editions share one jupyter-cache.

    python tools/i18n.py pot               # English pages -> _build/gettext/*.pot
    python tools/i18n.py update            # merge the .pot into the .po files
    python tools/i18n.py check [FILE.po]   # untranslated, fuzzy, or a role/number lost
    python tools/i18n.py export FILE.po    # its untranslated/fuzzy messages as YAML
    python tools/i18n.py fill FILE.po T.yml  # set translations from that YAML
    python tools/i18n.py config BUILD      # write BUILD/zh/_config_zh.yml for the zh build

``update`` keeps every translation whose English is unchanged; a changed message
keeps its old translation marked fuzzy (to be revised), a new one is empty.
``check`` fails on any of these, and on a translation that drops, adds or changes a
role ({glue:text}, {term}, {cite:t}, {numref}, {doc}, {ref}), an inline math span, an
inline code span or a link target of its English message, or that changes a display
equation other than in its words (``\\text{...}``). A glued English phrase
``key`` may become the lab's Chinese version of it, glued as ``key_zh``.
"""
import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml
from babel.messages import pofile

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "locale" / "zh_CN" / "LC_MESSAGES"
POT = ROOT / "_build" / "gettext"

ZH = {  # what the Chinese edition changes in _config.yml
    "title": "驯服过拟合",
    "author": "《驯服过拟合》作者",
}
ZH_SPHINX = {
    "language": "zh_CN",
    "locale_dirs": ["locale/"],
    "gettext_compact": False,
    # jieba splits 过拟合 into 过 + 拟合 unless it knows the word: the course's terms,
    # so that a search for 过拟合, 正则化 or 暂退法 finds them (tests/test_site.py)
    "html_search_options": {"dict": str(ROOT / "locale" / "zh_CN" / "search_dict.txt")},
}


def _config(extra_sphinx, execute=None, **top):
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    config.update(top)
    config["sphinx"]["config"].update(extra_sphinx)
    if execute is not None:
        config["execute"].update(execute)
    # the written config lives in a build folder: local extensions by absolute path
    config["sphinx"]["local_extensions"] = {
        name: str(ROOT / path) for name, path in config["sphinx"]["local_extensions"].items()}
    return config


def write_config(path, config):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")
    return path


def pot(_args):
    """English pages -> _build/gettext/**/*.pot (nothing is executed)."""
    out = ROOT / "_build" / "gettext-build"
    cfg = write_config(out / "_config_gettext.yml", _config(
        {"gettext_compact": False, "gettext_location": False, "gettext_uuid": False,
         "gettext_last_translator": "", "gettext_language_team": ""},
        execute={"execute_notebooks": "off"}))
    shutil.rmtree(out / "_build" / "gettext", ignore_errors=True)
    subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", "--builder",
                    "custom", "--custom-builder", "gettext", "--config", str(cfg),
                    "--path-output", str(out), str(ROOT)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(POT, ignore_errors=True)
    shutil.copytree(out / "_build" / "gettext", POT)
    print(f"{sum(1 for _ in POT.rglob('*.pot'))} templates in {POT.relative_to(ROOT)}")


def _read(path):
    with open(path, "rb") as f:
        return pofile.read_po(f)


def _write(path, catalog):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pofile.write_po(f, catalog, width=0, omit_header=False, ignore_obsolete=True,
                        include_previous=False, sort_output=False)


def update(args):
    """Merge every .pot into its .po: new messages empty, changed ones fuzzy."""
    if not POT.exists():
        pot(args)
    from babel.messages.catalog import Catalog
    templates = sorted(POT.rglob("*.pot"))
    for template_path in templates:
        if args.pages and not any(str(template_path.relative_to(POT)).startswith(p)
                                  for p in args.pages):
            continue
        rel = template_path.relative_to(POT).with_suffix(".po")
        po_path = LOCALE / rel
        template = _read(template_path)
        catalog = _read(po_path) if po_path.exists() else \
            Catalog(locale="zh_CN", project="Taming Overfitting")
        catalog.update(template, no_fuzzy_matching=False, update_header_comment=False)
        catalog.locale = "zh_CN"
        _write(po_path, catalog)
    known = {t.relative_to(POT).with_suffix(".po") for t in templates}
    for po_path in [] if args.pages else LOCALE.rglob("*.po"):
        if po_path.relative_to(LOCALE) not in known:
            po_path.unlink()
            print(f"removed {po_path.relative_to(ROOT)}: its page is gone")
    print(f"{len(templates)} catalogs in {LOCALE.relative_to(ROOT)}")


ROLE = re.compile(r"\{[a-z:-]+\}`[^`]*`")
MATH = re.compile(r"(?<![\\$])\$[^$]+\$")
CODE = re.compile(r"(?<![}`])`[^`{}]+`(?!`)")
LINK = re.compile(r"\]\(([^)]+)\)")
TARGET = re.compile(r"<([^<>]+)>`$")


def _role_key(role):
    """A role as what it points at: {term}`展示文字 <target>` keeps only its target."""
    name, _, body = role.partition("}`")
    if name == "{glue:text":  # a lab may glue a Chinese version of a phrase as KEY_zh
        return re.sub(r"_zh(?=:|`$)", "", role)
    if name in ("{term", "{doc", "{ref", "{numref"):
        m = TARGET.search(role)
        return f"{name}}}<{m.group(1) if m else body[:-1]}>"
    return role


def tokens(text):
    return Counter([_role_key(r) for r in ROLE.findall(text)]
                   + MATH.findall(ROLE.sub("", text))
                   + CODE.findall(ROLE.sub("", text))
                   + LINK.findall(text))


TEX_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|\S")  # a control word, a control symbol, a character


def tex_tokens(equation):
    """An equation's TeX as tokens, without its words (``\\text{...}``): the same tokens
    are the same equation whatever the line breaks, and ``\\qquad w`` stays apart from
    ``\\qquadw`` (an unknown control word)."""
    return TEX_TOKEN.findall(re.sub(r"\\text\{[^{}]*\}", "", equation))


def equation_changed(english, chinese):
    """A display equation (a message that opens with a line break, or with a TeX control
    word and no $) keeps its TeX; only its words may change. A blank line splits an
    equation in parts (Sphinx aligns them): the translation keeps the English parts."""
    if not (english[:1] == "\n" or (re.match(r"\\[A-Za-z]", english) and "$" not in english)):
        return False
    parts = lambda s: len(re.split(r"\n\s*\n", s.strip()))  # noqa: E731
    return tex_tokens(english) != tex_tokens(chinese) or parts(english) != parts(chinese)


def problems(path):
    out = []
    catalog = _read(path)
    for m in catalog:
        if not m.id:
            continue
        where = f"{path.relative_to(ROOT)}: {m.id[:60]!r}"
        if not m.string:
            out.append(f"untranslated  {where}")
        elif m.fuzzy:
            out.append(f"fuzzy         {where}")
        elif equation_changed(m.id, m.string):
            out.append(f"equation changed  {where}")
        else:
            src, dst = tokens(m.id), tokens(m.string)
            for role, n in (src - dst).items():
                out.append(f"lost {role!r} ({n}x)  {where}")
            for role, n in (dst - src).items():
                out.append(f"added {role!r} ({n}x)  {where}")
    return out


def check(args):
    paths = [Path(p).resolve() for p in args.files] or sorted(LOCALE.rglob("*.po"))
    found = [p for path in paths for p in problems(path)]
    for line in found:
        print(line)
    n = sum(len([m for m in _read(p) if m.id]) for p in paths)
    print(f"{len(paths)} catalogs, {n} messages, {len(found)} problems")
    return 1 if found else 0


class _Literal(yaml.SafeDumper):
    pass


_Literal.add_representer(str, lambda d, s: d.represent_scalar(
    "tag:yaml.org,2002:str", s, style="|" if len(s) > 40 and "\n" not in s else None))


def export(args):
    """Untranslated and fuzzy messages of one .po file as YAML (en, zh) for a translator."""
    catalog = _read(Path(args.po))
    messages = [m for m in catalog if m.id]
    todo = [{"id": i, "en": m.id, "zh": m.string if (m.fuzzy or args.all) else ""}
            for i, m in enumerate(messages) if args.all or not m.string or m.fuzzy]
    sys.stdout.write(yaml.dump(todo, Dumper=_Literal, allow_unicode=True, width=10 ** 6,
                               sort_keys=False))


def fill(args):
    """Set translations from a YAML list of {id, zh} (id as export numbers the messages;
    or {en, zh}, matched by the English); a filled message is no longer fuzzy."""
    path = Path(args.po)
    catalog = _read(path)
    messages = [m for m in catalog if m.id]
    by_en = {m.id: m for m in messages}
    n, bad = 0, 0
    for item in yaml.safe_load(Path(args.yaml).read_text(encoding="utf-8")) or []:
        if not item.get("zh"):
            continue
        if "id" in item and 0 <= int(item["id"]) < len(messages):
            m = messages[int(item["id"])]
            if "en" in item and item["en"] != m.id:
                print(f"id {item['id']}: its en differs from message {item['id']}; skipped")
                bad += 1
                continue
        elif item.get("en") in by_en:
            m = by_en[item["en"]]
        else:
            print(f"not in {path.name}: {item!r:.80}")
            bad += 1
            continue
        m.string, n = str(item["zh"]).strip(), n + 1
        m.flags.discard("fuzzy")
    _write(path, catalog)
    print(f"{n} messages filled in {path}")
    return 1 if bad else 0


def config(args):
    build = Path(args.build).resolve()
    cache = build / "_build" / ".jupyter_cache"
    path = write_config(build / "zh" / "_config_zh.yml", _config(
        ZH_SPHINX, execute={"cache": str(cache)}, **ZH))
    print(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("pot").set_defaults(run=pot)
    c = sub.add_parser("update")
    c.add_argument("pages", nargs="*", help="only these (e.g. chapters/06); default: all")
    c.set_defaults(run=update)
    c = sub.add_parser("check")
    c.add_argument("files", nargs="*")
    c.set_defaults(run=check)
    c = sub.add_parser("export")
    c.add_argument("po")
    c.add_argument("--all", action="store_true", help="every message, translated or not")
    c.set_defaults(run=export)
    c = sub.add_parser("fill")
    c.add_argument("po")
    c.add_argument("yaml")
    c.set_defaults(run=fill)
    c = sub.add_parser("config")
    c.add_argument("build")
    c.set_defaults(run=config)
    args = ap.parse_args()
    sys.exit(args.run(args) or 0)


if __name__ == "__main__":
    main()
