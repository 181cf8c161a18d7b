"""The site's third-party browser files, served from its own ``_static`` (no CDN, so the book works offline).

    python tools/vendor.py fetch     # npm pack the pinned packages, copy the files the pages load, record sha256
    python tools/vendor.py verify    # check every vendored file against the recorded sha256 (offline; the tests run it)

``fetch`` needs ``npm`` and the npm registry; ``verify`` needs neither. The files land in
``book/_static/vendor/<package>/`` and are committed, with ``book/_static/vendor/MANIFEST.json`` recording each
package's version, its tarball's npm integrity and the sha256 of every file taken from it. ``_config.yml`` points
MathJax (``mathjax_path``), require.js and the ipywidgets HTML manager (``nb_ipywidgets_js``) at them.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "book" / "_static" / "vendor"
MANIFEST = VENDOR / "MANIFEST.json"

# npm package -> (pinned version, folder under vendor/, [(pattern inside the tarball's package/, destination)]).
# Only what the pages load: MathJax's one combined TeX bundle (all TeX extensions built in, so nothing is
# autoloaded) with its CHTML fonts; the widget manager's AMD embed bundle with the woff2 icon fonts it references;
# require.js, which the embed bundle needs.
PACKAGES: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "mathjax": ("3.2.2", "mathjax", [
        ("es5/tex-chtml-full.js", "tex-chtml-full.js"),
        ("es5/output/chtml/fonts/woff-v2/*.woff", "output/chtml/fonts/woff-v2/"),
        ("LICENSE", "LICENSE"),
    ]),
    "@jupyter-widgets/html-manager": ("1.0.15", "html-manager", [
        ("dist/embed-amd.js", "embed-amd.js"),
        ("dist/*.woff2", "./"),
        ("dist/embed.js.LICENSE.txt", "LICENSE.txt"),
    ]),
    "requirejs": ("2.3.8", "requirejs", [
        ("require.js", "require.js"),
    ]),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def npm_pack(spec: str, into: Path) -> dict:
    """``npm pack spec`` into ``into``; returns npm's JSON record (filename, integrity, ...)."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm not found: `fetch` needs npm and the npm registry (`verify` needs neither)")
    res = subprocess.run([npm, "pack", "--json", spec], cwd=into, text=True, capture_output=True)
    if res.returncode != 0:
        raise SystemExit(f"npm pack {spec} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout)[0]


def fetch() -> dict:
    """Download the pinned tarballs, copy the listed files into ``vendor/`` and write the manifest."""
    manifest: dict = {"note": "written by `python tools/vendor.py fetch`; checked by `python tools/vendor.py verify`",
                      "packages": {}}
    if VENDOR.exists():
        for child in VENDOR.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    VENDOR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, (version, folder, picks) in PACKAGES.items():
            info = npm_pack(f"{name}@{version}", tmp)
            if info["version"] != version:
                raise SystemExit(f"npm served {name}@{info['version']}, expected {version}")
            with tarfile.open(tmp / info["filename"]) as tar:
                members = {m.name.removeprefix("package/"): m for m in tar.getmembers() if m.isfile()}
                files = {}
                for pattern, dest in picks:
                    hits = sorted(p for p in members if fnmatch.fnmatchcase(p, pattern))
                    if not hits:
                        raise SystemExit(f"{name}@{version}: nothing matches {pattern!r}")
                    for inner in hits:
                        rel = (dest + Path(inner).name) if dest.endswith("/") else dest
                        out = VENDOR / folder / Path(rel)
                        out.parent.mkdir(parents=True, exist_ok=True)
                        out.write_bytes(tar.extractfile(members[inner]).read())
                        files[out.relative_to(VENDOR).as_posix()] = {"from": inner, "sha256": sha256(out)}
            manifest["packages"][name] = {"version": version, "registry": "npm", "integrity": info["integrity"],
                                          "files": dict(sorted(files.items()))}
            print(f"{name}@{version}: {len(files)} file(s)")
    MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def verify() -> list[str]:
    """Problems with the vendored files (empty when every file matches its recorded sha256 and none is extra)."""
    if not MANIFEST.is_file():
        return [f"{MANIFEST.relative_to(ROOT)} is missing: run `python tools/vendor.py fetch`"]
    manifest = json.loads(MANIFEST.read_text())
    problems, listed = [], {MANIFEST.relative_to(VENDOR).as_posix()}
    for name, (version, _folder, _picks) in PACKAGES.items():
        entry = manifest["packages"].get(name)
        if entry is None or entry["version"] != version:
            problems.append(f"{name}: manifest has {entry and entry['version']}, tools/vendor.py pins {version}")
            continue
        for rel, rec in entry["files"].items():
            listed.add(rel)
            path = VENDOR / rel
            if not path.is_file():
                problems.append(f"{rel}: missing")
            elif sha256(path) != rec["sha256"]:
                problems.append(f"{rel}: sha256 differs from the manifest ({name}@{version})")
    for path in VENDOR.rglob("*"):
        if path.is_file() and path.relative_to(VENDOR).as_posix() not in listed:
            problems.append(f"{path.relative_to(VENDOR).as_posix()}: not in the manifest")
    return problems


def total_bytes() -> int:
    return sum(p.stat().st_size for p in VENDOR.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=("fetch", "verify"))
    args = ap.parse_args(argv)
    if args.cmd == "fetch":
        fetch()
    problems = verify()
    for p in problems:
        print("vendor:", p, file=sys.stderr)
    if not problems:
        print(f"vendored files verified ({total_bytes() / 1e6:.1f} MB in {VENDOR.relative_to(ROOT)})")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
