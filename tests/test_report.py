"""The report builder: methods register sections; `build_report` finds what a run holds."""

import pytest

from speculum.report import Report, build_report, register_sections, table_to_html


def test_build_report_includes_the_sections_of_methods_a_run_holds(tmp_path, monkeypatch):
    import speculum.autoencode  # noqa: F401  (registers its sections in the real registry first)
    import speculum.report.builder as builder

    monkeypatch.setattr(builder, "_PROVIDERS", dict(builder._PROVIDERS))  # the toy stays in this test
    monkeypatch.setattr(builder, "_TITLES", dict(builder._TITLES))

    @register_sections("toy_method", holds=lambda run: (run / "toy.txt").exists(), title="speculum: toy")
    def toy_sections(run_dir, data=None):
        return [("Toy numbers", table_to_html([{"answer": 42, "data": str(data)}]))]

    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no results of any method"):
        build_report(run)
    (run / "toy.txt").write_text("x")
    page = build_report(run, data="<d&>", unknown_option=1).read_text()  # options a method does not take are dropped
    assert "<title>speculum: toy</title>" in page and '<h2 id="toy-numbers">Toy numbers</h2>' in page
    assert "<td>42</td>" in page and "&lt;d&amp;&gt;" in page and "<d&>" not in page  # user strings are escaped
    assert not list(run.glob(".tmp-*"))  # written atomically, nothing left behind


def test_report_escapes_titles():
    r = Report("<script>alert(1)</script>")
    r.add("a <b>", "<p>ok</p>")
    html = r.render()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html and "a &lt;b&gt;" in html
