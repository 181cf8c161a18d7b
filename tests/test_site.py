"""The site and the newcomer's path: vendored browser files, workflows, the Colab install, and the built pages
checked in headless Chromium.

The ``test_browser_*`` tests read the built site (``_build/html``), so ``make test`` runs them after the build
(``COURSE_SITE_TEST=1 pytest tests/test_site.py -k browser``); the main test run skips them. Without a Chromium
they skip with one line saying so. Screenshots of every page go to ``_build/screenshots/``.
"""

from __future__ import annotations

import base64
import fcntl
import functools
import http.server
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import course
import pytest
import vendor
import yaml

ROOT = course.ROOT
HTML = course.BUILD / "html"
SHOTS = course.BUILD / "screenshots"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
SPHINX = CONFIG["sphinx"]["config"]


# ----------------------------------------------------------------------------- static checks (main test run)


def test_vendored_files_match_their_checksums():
    assert vendor.verify() == []
    assert vendor.total_bytes() < 8_000_000, "keep the vendored files small: only what the pages load"


def test_config_loads_browser_files_from_the_site():
    static = ROOT / "book" / "_static"
    assert SPHINX["html_static_path"] == ["book/_static"]
    paths = [SPHINX["mathjax_path"], *SPHINX["nb_ipywidgets_js"]]
    for p in paths:
        assert "//" not in p, f"{p}: the pages must not load from a CDN"
        assert (static / p).is_file(), f"_config.yml names {p}, which is not in book/_static/"
    for css in SPHINX["html_css_files"]:
        assert (static / css).is_file()
    assert (static / Path(course.LOCAL_BADGE).name).is_file()


def _workflow(name):
    path = ROOT / ".github" / "workflows" / name
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def test_workflows_are_well_formed():
    readme = (ROOT / "README.md").read_text()
    for name in ("test.yml", "book.yml"):
        wf = _workflow(name)
        assert wf.get("name") and wf["on"] and wf["jobs"], f"{name}: needs name, on, jobs"
        for job_id, job in wf["jobs"].items():
            assert "runs-on" in job, f"{name}: job {job_id} has no runs-on"
            assert job["steps"], f"{name}: job {job_id} has no steps"
            for step in job["steps"]:
                assert ("uses" in step) != ("run" in step), f"{name}: a step needs exactly one of uses/run: {step}"
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", step["uses"]), f"pin actions to a major: {step}"
    test = _workflow("test.yml")
    assert {"push", "pull_request"} <= set(test["on"])
    runs = [s["run"] for j in test["jobs"].values() for s in j["steps"] if "run" in s]
    assert any("make test" in r for r in runs) and "make test" in readme
    book = _workflow("book.yml")
    runs = [s["run"] for j in book["jobs"].values() for s in j["steps"] if "run" in s]
    assert any("make book" in r and "PROFILE=cpu" in r for r in runs)
    uses = [s["uses"] for j in book["jobs"].values() for s in j["steps"] if "uses" in s]
    assert any(u.startswith("actions/deploy-pages@") for u in uses)
    assert any(u.startswith("actions/upload-pages-artifact@") for u in uses)
    deploy = [j for j in book["jobs"].values() if any(s.get("uses", "").startswith("actions/deploy-pages@")
                                                       for s in j["steps"])]
    assert deploy and all("refs/heads/main" in str(j.get("if", "")) for j in deploy), "deploy only from main"


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint not installed (YAML checks above ran)")
def test_workflows_pass_actionlint():
    res = subprocess.run(["actionlint", "-shellcheck=", "-pyflakes="], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_docs_run_tools_with_the_venv_python():
    """Every `tools/...` or `-m companion...` command in the docs names .venv/bin/python (the system one lacks
    the packages)."""
    docs = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "book").glob("*.md"))]
    bad = []
    for f in docs:
        if f.read_text().startswith("<!-- written by"):  # generated (the benchmark table records its own command)
            continue
        for line in f.read_text().splitlines():
            for m in re.finditer(r"(\S*)python3?(?:\.\d+)? +(tools/\S+|-m companion\S*)", line):
                if not m.group(1).endswith(".venv/bin/"):
                    bad.append(f"{f.name}: {line.strip()}")
    assert not bad, "use .venv/bin/python in documented commands:\n" + "\n".join(bad)


def _farm(site_packages: Path, into: Path) -> Path:
    """A folder of links to an environment's packages, without this project's own install."""
    into.mkdir()
    for entry in site_packages.iterdir():
        name = entry.name.lower()
        if name.startswith(("generatevision", "__editable__", "companion", "_distutils_hack", "distutils-precedence",
                            "pip", "setuptools", "pkg_resources")) or name.endswith(".pth"):
            continue
        (into / entry.name).symlink_to(entry)
    return into


@pytest.mark.slow
def test_install_from_git_like_colab(tmp_path):
    """Slow (tens of seconds) but included: install the package the way the Colab cell does — from a git URL of
    this repository, with its dependencies — into a fresh venv that already has torch (as Colab does), then
    import it and load a shipped checkpoint from outside the repository."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if not sha:
        pytest.skip("no commit to install")
    spec = re.search(r'%pip install -q "([^"]+)"', course.install_source()).group(1)
    url, _ = course.repository()
    spec = spec.replace(f"git+{url}@", f"git+file://{ROOT}@").rsplit("@", 1)[0] + f"@{sha}"
    env_dir = tmp_path / "colab"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    here = Path(subprocess.run([sys.executable, "-c", "import torch, os; print(os.path.dirname(torch.__path__[0]))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "preinstalled.pth").write_text(str(_farm(here, tmp_path / "preinstalled")) + "\n")
    # This environment's (current) pip installs into the fresh one, as Colab's own pip would.
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", spec], cwd=tmp_path,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    probe = ("import companion, companion.hub as hub, torch\n"
             "m = hub.load_model('mlp_mnist')\n"
             "n = sum(p.numel() for p in m.parameters())\n"
             "print(companion.__file__, type(m).__name__, n)\n")
    res = subprocess.run([str(py), "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COURSE_DATA")})
    assert res.returncode == 0, res.stderr[-3000:]
    where, _cls, n = res.stdout.split()
    assert Path(where).is_relative_to(site), f"imported companion from {where}, not the fresh install"
    card = next(c for c in course.checkpoint_cards() if c["name"] == "mlp_mnist")
    assert int(n) == card.get("parameters", int(n))


# ----------------------------------------------------------------------------- the built site in Chromium


def _chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3/4): no extra Python packages."""

    def __init__(self, exe: str, profile_dir: str) -> None:
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        hi_r, hi_w = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)

        def wire():
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        args = [exe, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--disable-domain-reliability", "--metrics-recording-only",
                "--disable-features=Translate,OptimizationHints,MediaRouter,InterestFeedContentSuggestions",
                "--hide-scrollbars", "--mute-audio", "--window-size=1280,900", f"--user-data-dir={profile_dir}",
                "about:blank"]
        self.proc = subprocess.Popen(args, preexec_fn=wire, pass_fds=(3, 4), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(hi_r)
        os.close(hi_w)
        self.w = to_chrome_w
        self.r = from_chrome_r
        self.next_id = 0
        self.replies: dict[int, queue.Queue] = {}
        self.events: queue.Queue = queue.Queue()
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self.r, 1 << 20)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            *msgs, buf = buf.split(b"\0")
            for raw in msgs:
                msg = json.loads(raw)
                if "id" in msg:
                    self.replies.pop(msg["id"]).put(msg)
                else:
                    self.events.put(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60):
        with self.lock:
            self.next_id += 1
            mid = self.next_id
            box = self.replies[mid] = queue.Queue()
            msg = {"id": mid, "method": method, "params": params or {}}
            if session:
                msg["sessionId"] = session
            os.write(self.w, json.dumps(msg).encode() + b"\0")
        reply = box.get(timeout=timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for fd in (self.w, self.r):
            try:
                os.close(fd)
            except OSError:
                pass


COLLECT = r"""
(() => {
  const skip = el => el.closest('pre, code, script, style, textarea, mjx-container, .MathJax, mjx-assistive-mml');
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const rawTex = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.parentElement || skip(n.parentElement)) continue;
    const t = n.textContent;
    if (/\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{|\$[^$\n]{0,80}[\\^_{][^$\n]{0,80}\$/.test(t)) rawTex.push(t.trim().slice(0, 120));
  }
  const math = [...document.querySelectorAll('span.math, div.math')];
  const img = i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0,
                     output: !!i.closest('.cell_output, .output'), alt: i.alt,
                     link: i.closest('a') ? i.closest('a').href : null});
  const widgets = [...document.querySelectorAll('.jupyter-widgets')];
  return JSON.stringify({
    title: document.title,
    rawTex,
    mathCount: math.length,
    unrendered: math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80)),
    imgs: [...document.querySelectorAll('img')].map(img),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    colab: [...document.querySelectorAll('a[href*="colab.research.google.com"]')].map(a => a.href),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id).concat([...document.querySelectorAll('a[name]')].map(a => a.name)),
    widgetState: !!document.querySelector('script[type="application/vnd.jupyter.widget-state+json"]'),
    widgetViews: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
    sliders: document.querySelectorAll('.widget-slider input, .widget-hslider, .jupyter-widgets .slider').length,
    widgetImages: [...document.querySelectorAll('.jupyter-widgets img, img.widget-image')].filter(i => i.naturalWidth > 0).length,
    widgetCount: widgets.length,
    staticExplorer: [...document.querySelectorAll('div.cell')]
      .filter(c => { const i = c.querySelector('.cell_input'); return i && /latent_explorer\([^]*static\s*=\s*True/.test(i.textContent); })
      .map(c => [...c.querySelectorAll('.cell_output img')].filter(i => i.naturalWidth > 0).length),
    wideOutputs: [...document.querySelectorAll('.cell_output pre, .output pre')]
                   .filter(p => p.scrollWidth > p.clientWidth + 2).map(p => p.textContent.slice(0, 80)),
    pageWidth: document.documentElement.scrollWidth,
    viewWidth: document.documentElement.clientWidth,
  });
})()
"""


def _serve(root: Path):
    handler = functools.partial(type("Quiet", (http.server.SimpleHTTPRequestHandler,),
                                     {"log_message": lambda *a: None}), directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Crawl:
    """Load every page of the site once and record what a reader's browser did and saw."""

    def __init__(self, browser: Browser, origin: str) -> None:
        self.b, self.origin = browser, origin
        target = self.b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.s = self.b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            self.b.send(f"{domain}.enable", session=self.s)
        self.b.send("Network.setCacheDisabled", {"cacheDisabled": False}, session=self.s)
        self.requests: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        self.inflight: dict[str, str] = {}
        self.seen: set[str] = set()
        self.loaded = False

    def _pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            try:
                ev = self.b.events.get(timeout=min(left, 0.05))
            except queue.Empty:
                continue
            m, p = ev.get("method"), ev.get("params", {})
            if m.startswith("Network.") and m != "Network.requestWillBeSent" and p.get("requestId") not in self.seen:
                continue  # a late event of the previous page's requests
            if m == "Network.requestWillBeSent":
                self.requests.append(p["request"]["url"])
                self.inflight[p["requestId"]] = p["request"]["url"]
                self.seen.add(p["requestId"])
            elif m == "Network.responseReceived" and p["response"]["status"] >= 400:
                self.failed.append(f"{p['response']['status']} {p['response']['url']}")
            elif m == "Network.loadingFailed":
                url = self.inflight.get(p["requestId"], p["requestId"])
                self.failed.append(f"{p.get('errorText')} {url}")
                self.inflight.pop(p["requestId"], None)
            elif m == "Network.loadingFinished":
                self.inflight.pop(p["requestId"], None)
            elif m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                self.errors.append((d.get("exception") or {}).get("description", d.get("text", ""))[:300])
            elif m == "Page.loadEventFired":
                self.loaded = True

    def eval(self, expr: str, await_promise: bool = False):
        r = self.b.send("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                             "awaitPromise": await_promise}, session=self.s)
        return r["result"].get("value")

    def until(self, expr: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.eval(expr):
                return True
            self._pump(0.1)
        return False

    def idle(self, quiet: float = 0.4, timeout: float = 15) -> None:
        end = time.monotonic() + timeout
        last_busy = time.monotonic()
        while time.monotonic() < end:
            self._pump(0.05)
            if self.inflight:
                last_busy = time.monotonic()
            elif time.monotonic() - last_busy >= quiet:
                return

    def visit(self, url: str, shot: Path) -> dict:
        self.requests, self.failed, self.errors, self.inflight, self.loaded = [], [], [], {}, False
        self.seen: set[str] = set()
        self.b.send("Page.navigate", {"url": url}, session=self.s)
        end = time.monotonic() + 60
        while not self.loaded and time.monotonic() < end:
            self._pump(0.1)
        self.until("!window.MathJax || !!(MathJax.startup && MathJax.startup.promise)", 20)
        self.eval("window.MathJax && MathJax.startup && MathJax.startup.promise ? "
                  "MathJax.startup.promise.then(() => true) : true", await_promise=True)
        if self.eval("!!document.querySelector('script[type=\"application/vnd.jupyter.widget-view+json\"]')"):
            self.until("document.querySelectorAll('.jupyter-widgets').length > 0", 30)
        self.idle()
        info = json.loads(self.eval(COLLECT))
        info.update(url=url, requests=self.requests, failed=self.failed, errors=self.errors)
        if "10_variational" in url:  # show the latent explorer in the screenshot
            self.eval("(() => { const s = document.querySelector('.widget-slider, .widget-hslider'); "
                      "if (s) s.scrollIntoView({block: 'center'}); })()")
            self._pump(0.3)
        png = self.b.send("Page.captureScreenshot", {"format": "png"}, session=self.s)["data"]
        shot.parent.mkdir(parents=True, exist_ok=True)
        shot.write_bytes(base64.b64decode(png))
        return info


def _pages() -> list[str]:
    return sorted(p.relative_to(HTML).as_posix() for p in HTML.rglob("*.html")
                  if not p.relative_to(HTML).parts[0].startswith("_"))


@pytest.fixture(scope="module")
def site():
    if os.environ.get("COURSE_SITE_TEST") != "1":
        pytest.skip("browser checks run after the site build (make test: COURSE_SITE_TEST=1 ... -k browser)")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium): browser checks of the site skipped")
    if not (HTML / "index.html").is_file():
        pytest.fail("no built site in _build/html: run `.venv/bin/python tools/course.py build` first")
    server = _serve(HTML)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(exe, profile)
        try:
            crawl = Crawl(browser, origin)
            pages = {}
            for rel in _pages():
                pages[rel] = crawl.visit(f"{origin}/{rel}", SHOTS / (rel.removesuffix(".html").replace("/", "__")
                                                                       + ".png"))
            query = "convolution"
            search = crawl.visit(f"{origin}/search.html?q={query}", SHOTS / "search-results.png")
            crawl.until("document.querySelectorAll('#search-results li').length > 0", 20)
            search["hits"] = crawl.eval("[...document.querySelectorAll('#search-results li a')].map(a => a.href)")
        finally:
            browser.close()
            server.shutdown()
    return {"origin": origin, "pages": pages, "search": search}


CHAPTER_PAGES = [f"chapters/{p.stem}.html" for p in course.chapter_paths()]


def _local(site, url: str) -> bool:
    return url.startswith(site["origin"] + "/")


def check_every_page_loaded(site):
    assert set(CHAPTER_PAGES) <= set(site["pages"])
    assert len(list(SHOTS.glob("*.png"))) == len(site["pages"]) + 1


def check_no_request_leaves_the_site(site):
    outside = {f"{rel}: {u}" for rel, p in site["pages"].items() for u in p["requests"]
               if not _local(site, u) and not u.startswith(("data:", "blob:", "about:"))}
    assert not outside, "pages fetched from outside the site:\n" + "\n".join(sorted(outside))


def check_no_failed_request_or_script_error(site):
    failed = [f"{rel}: {f}" for rel, p in site["pages"].items() for f in p["failed"]]
    errors = [f"{rel}: {e}" for rel, p in site["pages"].items() for e in p["errors"]]
    assert not failed, "failed requests:\n" + "\n".join(failed)
    assert not errors, "script errors:\n" + "\n".join(errors)


def check_maths_is_rendered(site):
    assert site["pages"]["book/notation.html"]["mathCount"] > 10
    for rel, p in site["pages"].items():
        assert not p["unrendered"], f"{rel}: maths MathJax did not render: {p['unrendered'][:3]}"
        assert not p["rawTex"], f"{rel}: raw TeX in the visible text: {p['rawTex'][:3]}"
    for rel in CHAPTER_PAGES:
        assert site["pages"][rel]["mathCount"] > 0, f"{rel}: no maths at all?"


def check_every_image_loads_and_chapters_have_figures(site):
    for rel, p in site["pages"].items():
        broken = [i["src"] for i in p["imgs"] if not i["ok"]]
        assert not broken, f"{rel}: images that did not load: {broken[:3]}"
    for rel in CHAPTER_PAGES:
        figures = [i for i in site["pages"][rel]["imgs"] if i["output"]]
        assert figures, f"{rel}: no figure in the cell outputs (did matplotlib draw inline when it was executed?)"


def check_latent_explorer_renders_from_saved_state(site):
    p = site["pages"]["chapters/10_variational_autoencoders.html"]
    assert p["widgetState"] and p["widgetViews"] > 0
    assert p["sliders"] >= 2, "the latent explorer should render as sliders"
    assert p["widgetImages"] >= 1, "the latent explorer should show its decoded image from the saved state"
    assert p["staticExplorer"] and all(n >= 1 for n in p["staticExplorer"]), \
        f"the explorer's static traversal figure (the fallback) is missing: {p['staticExplorer']}"


def check_colab_button_and_badge_point_at_the_notebook(site):
    url, branch = course.repository()
    slug = url.removeprefix("https://github.com/")
    for nb in course.chapter_paths():
        p = site["pages"][f"chapters/{nb.stem}.html"]
        want = f"https://colab.research.google.com/github/{slug}/blob/{branch}/chapters/{nb.name}"
        assert want == course.colab_url(nb)
        assert want in p["colab"], f"{nb.stem}: no Colab launch button for {want}: {p['colab']}"
        badges = [i for i in p["imgs"] if i["alt"] == "Open In Colab"]
        assert badges and all(b["link"] == want for b in badges), f"{nb.stem}: badge link {badges}"
        assert all(_local(site, b["src"]) for b in badges), "the badge image is served by the site"


def _target(site, url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    path = urllib.parse.unquote(parts.path).lstrip("/")
    if path == "" or path.endswith("/"):
        path += "index.html"
    return path, parts.fragment


def check_no_broken_internal_link_or_anchor(site):
    broken = set()
    for rel, p in site["pages"].items():
        for link in p["links"]:
            if not _local(site, link):
                continue
            path, frag = _target(site, link)
            if not (HTML / path).is_file():
                broken.add(f"{rel}: {link} (no such file)")
            elif frag and path in site["pages"] and frag not in site["pages"][path]["ids"]:
                broken.add(f"{rel}: {link} (no #{frag} there)")
    assert not broken, "broken internal links:\n" + "\n".join(sorted(broken))


def check_exercises_and_solutions_link_both_ways(site):
    for nb in course.chapter_paths():
        chapter, solutions = f"chapters/{nb.stem}.html", f"solutions/{nb.stem}.html"
        ids = course.solution_exercises(course.SOLUTIONS / f"{nb.stem}.py")
        to_sol = {_target(site, u) for u in site["pages"][chapter]["links"] if _local(site, u)}
        back = {_target(site, u) for u in site["pages"][solutions]["links"] if _local(site, u)}
        for ex in ids:
            sol, ex_anchor = "sol-" + ex.replace(".", "-"), course.exercise_label(ex)
            assert (solutions, sol) in to_sol, f"{chapter}: no link to {solutions}#{sol}"
            assert (chapter, ex_anchor) in back, f"{solutions}: no link back to {chapter}#{ex_anchor}"
            assert ex_anchor in site["pages"][chapter]["ids"]


def check_search_finds_pages(site):
    hits = site["search"]["hits"]
    assert hits, "the search page found nothing for 'convolution'"
    assert any("chapters/03_convolution" in h for h in hits)


def check_injected_parameters_hidden_and_outputs_fit(site):
    for rel in CHAPTER_PAGES:
        html = (HTML / rel).read_text()
        assert "injected-parameters" not in html, f"{rel}: papermill's injected-parameters cell is shown"
        p = site["pages"][rel]
        assert not p["wideOutputs"], f"{rel}: output lines wider than the page: {p['wideOutputs'][:2]}"
        assert p["pageWidth"] <= p["viewWidth"] + 1, f"{rel}: the page scrolls sideways"


def check_checkpoints_page_is_a_readable_table(site):
    p = site["pages"]["book/checkpoints.html"]
    assert p["pageWidth"] <= p["viewWidth"] + 1
    for c in course.checkpoint_cards():
        assert course.checkpoint_label(c["name"]) in p["ids"]
    assert "{'" not in (HTML / "book" / "checkpoints.html").read_text(), "a raw dict is printed"


def check_bibliography_has_no_raw_tex(site):
    text = (HTML / "book" / "bibliography.html").read_text()
    assert "$" not in re.sub(r"<script.*?</script>", "", text, flags=re.S)


BROWSER_CHECKS = [check_every_page_loaded, check_no_request_leaves_the_site, check_no_failed_request_or_script_error, check_maths_is_rendered, check_every_image_loads_and_chapters_have_figures, check_latent_explorer_renders_from_saved_state, check_colab_button_and_badge_point_at_the_notebook, check_no_broken_internal_link_or_anchor, check_exercises_and_solutions_link_both_ways, check_search_finds_pages, check_injected_parameters_hidden_and_outputs_fit, check_checkpoints_page_is_a_readable_table, check_bibliography_has_no_raw_tex]


def test_browser_site(site):
    """Every page of the built site as a reader's browser shows it: all the checks above, each reported."""
    problems = []
    for check in BROWSER_CHECKS:
        try:
            check(site)
        except AssertionError as e:
            problems.append(f"{check.__name__}: {e}")
    assert not problems, "\n\n".join(problems)
