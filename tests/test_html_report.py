"""The HTML report (--report-file X.html): what the page holds, and what a real browser shows."""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser

import pytest
from browser import INSTALL_HINT, Browser, colour_counts, find_browser, page_requests, png_pixels
from conftest import run_cli
from runs import attempt, big_run, job, pipeline

from orchestrator.html_report import render_html
from orchestrator.report import write_report_file
from orchestrator.results import JobResult, RunSummary, Status

EVIL = '<img src=x onerror="alert(1)">\'</title></svg><script>alert(2)</script>'
EVIL_TAIL = "ok so far\n\x1b[31m<script>alert(3)</script>\x1b[0m\n</pre><iframe src=//evil>\n"


class Page(HTMLParser):
    """The elements of a page: tag and attributes, plus the text of each bar's <title>."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.bars: list[dict[str, str]] = []
        self.in_bar_title = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.elements.append((tag, values))
        if tag == "rect" and "bar" in values.get("class", "").split():
            self.bars.append(values | {"title": ""})
        self.in_bar_title = tag == "title" and bool(self.bars) and self.elements[-2][0] == "rect"

    def handle_endtag(self, tag: str) -> None:
        self.in_bar_title = False

    def handle_data(self, data: str) -> None:
        if self.in_bar_title:
            self.bars[-1]["title"] += data

    def tags(self, name: str) -> list[dict[str, str]]:
        return [attrs for tag, attrs in self.elements if tag == name]


def evil_run() -> tuple[RunSummary, dict[str, tuple[str, ...]]]:
    results = [
        job(EVIL, attempt(1, 0, 1, slot=0), ready=0),
        job("after", attempt(1, 1, 2, slot=0, exit_code=1), ready=1, tail=EVIL_TAIL),
    ]
    return RunSummary(results, elapsed=2.0, run_id="<b>run</b>"), {"after": (EVIL,)}


def attempts_of(summary: RunSummary) -> list[tuple[str, int]]:
    return sorted((result.name, one.number) for result in summary.results for one in result.tries)


def assert_bars_match(page: Page, summary: RunSummary, critical: set[str]) -> None:
    """One bar per attempt carrying its job's name; exactly the critical path's bars marked."""
    assert sorted((bar["data-job"], int(bar["data-attempt"])) for bar in page.bars) == attempts_of(summary)
    for bar in page.bars:
        assert bar["title"].startswith(bar["data-job"] + " · attempt ")
        on_path = bar["data-job"] in critical
        assert ("critical" in bar["class"].split()) == on_path
        assert bar["data-critical"] == ("true" if on_path else "false")


def assert_self_contained(text: str) -> None:
    """Nothing the page could fetch: no src, no href but in-page ones, no CSS url() but to an
    in-page pattern, no @import; and a policy that forbids fetching anything anyway."""
    page = Page(text)
    assert not [attrs for _, attrs in page.elements if "src" in attrs]
    assert all(attrs["href"].startswith("#") for _, attrs in page.elements if "href" in attrs)
    assert set(re.findall(r"url\(([^)]*)\)", text)) <= {"#retried"}
    assert "@import" not in text and not page.tags("script") and not page.tags("link")
    [policy] = [m for m in page.tags("meta") if m.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in policy["content"]


# -- the page as written --------------------------------------------------------------------


def test_page_has_a_bar_per_attempt_and_the_table():
    summary, needs = pipeline()
    text = render_html(summary, {"job_file": "/ci/jobs.yaml"}, needs)
    page = Page(text)
    assert_bars_match(page, summary, {"gen", "build", "test"})
    rows = [attrs["data-job"] for attrs in page.tags("tr") if "data-job" in attrs]
    assert rows == [result.name for result in summary.results]
    assert "Critical path: <b>gen</b> → <b>build</b> → <b>test</b> (10.0s of 10.5s)" in text
    retried = [bar for bar in page.bars if bar["data-status"] == "retried"]
    assert [(bar["data-job"], bar["data-attempt"]) for bar in retried] == [("test", "1")]
    assert_self_contained(text)


def test_page_escapes_job_names_and_output():
    summary, needs = evil_run()
    text = render_html(summary, {"job_file": EVIL}, needs)
    page = Page(text)
    assert not page.tags("script") and not page.tags("img") and not page.tags("iframe")
    assert not [attrs for _, attrs in page.elements if any(name.startswith("on") for name in attrs)]
    assert "\x1b" not in text
    assert_bars_match(page, summary, {EVIL, "after"})
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in text
    assert_self_contained(text)


def test_page_for_a_run_where_nothing_ran():
    summary = RunSummary([JobResult("a", Status.SKIPPED, reason="needs b, which failed")], elapsed=0.0)
    text = render_html(summary, {}, {})
    assert "No job ran." in text and "needs b, which failed" in text


def test_report_file_html_through_the_command_line(tmp_path, write_jobs):
    jobs = write_jobs("jobs:\n  gen: {run: 'true'}\n  build: {run: 'exit 3', needs: [gen]}\n")
    page = tmp_path / "report.html"
    result = run_cli("run", jobs, "--report-file", page)
    assert result.returncode == 1, result.stderr
    parsed = Page(page.read_text("utf-8"))
    assert sorted(bar["data-job"] for bar in parsed.bars) == ["build", "gen"]
    assert {bar["data-job"]: bar["data-status"] for bar in parsed.bars} == {"gen": "ok", "build": "failed"}
    assert all(bar["data-critical"] == "true" for bar in parsed.bars)


def test_unknown_report_extension_names_html():
    result = run_cli("run", "jobs.yaml", "--report-file", "r.txt")
    assert result.returncode == 2 and ".html" in result.stderr


# -- in a real browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Browser:
    executable = find_browser()
    if executable is None:
        pytest.skip(INSTALL_HINT)
    return Browser(executable, tmp_path_factory.mktemp("chromium"))


def test_browser_shows_a_bar_per_attempt_and_fetches_nothing(browser, tmp_path):
    summary, needs = pipeline()
    page = tmp_path / "report.html"
    write_report_file(str(page), summary, {}, needs)
    net_log = tmp_path / "net.json"
    dom = Page(browser.dump_dom(page, net_log=net_log))
    assert_bars_match(dom, summary, {"gen", "build", "test"})
    assert len([attrs for attrs in dom.tags("tr") if "data-job" in attrs]) == len(summary.results)
    assert page_requests(net_log) == []


def test_network_check_sees_a_page_that_fetches(browser, tmp_path):
    # The check above must be able to fail: a page with an image from the network trips it.
    page = tmp_path / "fetching.html"
    page.write_text('<html><body><img src="http://example.invalid/x.png"><p>hi</p></body></html>')
    net_log = tmp_path / "net.json"
    browser.dump_dom(page, net_log=net_log)
    assert page_requests(net_log) == ["http://example.invalid/x.png"]


def test_browser_runs_nothing_a_job_name_or_output_smuggles_in(browser, tmp_path):
    summary, needs = evil_run()
    page = tmp_path / "report.html"
    write_report_file(str(page), summary, {"job_file": EVIL}, needs)
    dom = Page(browser.dump_dom(page))
    assert not dom.tags("script") and not dom.tags("img") and not dom.tags("iframe")
    assert_bars_match(dom, summary, {EVIL, "after"})


def test_screenshot_shows_the_chart(browser, tmp_path):
    summary, needs = pipeline()
    page = tmp_path / "report.html"
    write_report_file(str(page), summary, {}, needs)
    png = browser.screenshot(page, tmp_path / "shot.png", size="1200,600")
    width, height, pixels = png_pixels(png)
    colours = colour_counts(pixels)
    assert (width, height) == (1200, 600)
    assert len(colours) > 20, "a blank or nearly blank screenshot"
    assert colours.most_common(1)[0][1] < 0.97 * width * height
    ok_green, failed_red = bytes((0x2E, 0x9E, 0x4F)), bytes((0xD6, 0x45, 0x45))
    assert colours[ok_green] > 1000, "the ok bars are not drawn"
    assert colours[failed_red] == 0  # no job failed in this run: the colour means something


@pytest.mark.slow
def test_browser_renders_two_thousand_jobs(browser, tmp_path):
    summary, needs = big_run(2000)
    page = tmp_path / "report.html"
    write_report_file(str(page), summary, {}, needs)
    assert page.stat().st_size < 3_000_000
    began = time.monotonic()
    dom = Page(browser.dump_dom(page))
    assert time.monotonic() - began < 60  # generous: about 3 s on a busy 2-core machine
    assert len(dom.bars) == sum(len(result.tries) for result in summary.results) > 2000
    assert len([attrs for attrs in dom.tags("tr") if "data-job" in attrs]) == 2000
