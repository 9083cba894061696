"""Summary tables: text, Markdown, and LaTeX for Jupyter."""

import convgen
from convgen import symbolic as sym


def _chain():
    return convgen.Sequential(convgen.Conv2d(1, 4, 3, padding=1), convgen.MaxPool2d(2),
                              names=["conv", "pool"])


def test_text_table_rows_and_totals():
    text = _chain().summary((1, 8, 8), title="tiny").to_text()
    lines = text.splitlines()
    assert lines[0] == "tiny"
    assert lines[1].split() == ["#", "name", "layer", "output", "shape", "params", "dense",
                                "n(m+1)", "MACs", "receptive", "field"]
    assert "conv" in lines[3] and "(4, 8, 8)" in lines[3] and "40" in lines[3]
    assert "pool" in lines[4] and "(4, 4, 4)" in lines[4]
    assert "total params: 40" in text
    assert "total MACs: 2,304" in text


def test_markdown_and_latex():
    H, W = sym.size_symbols("H W")
    summary = _chain().summary((1, H, W))
    markdown = summary.to_markdown()
    assert markdown.splitlines()[0].startswith("| # | name |")
    assert "`(4, H, W)`" in markdown
    latex = summary._repr_markdown_()
    assert r"\left\lfloor{\frac{H}{2}}\right\rfloor" in latex
    assert "$" in latex


def test_summary_totals_match_the_chain():
    chain = _chain()
    summary = chain.summary((2, 1, 8, 8))
    assert summary.total_params == chain.num_params == 40
    assert summary.total_macs == chain.macs((2, 1, 8, 8)) == 2 * 4 * 64 * 9
    assert summary.total_flops == chain.flops((2, 1, 8, 8))
    assert str(summary) == summary.to_text()


def test_pending_conditions_read_as_the_shape_command_prints_them():
    from convgen.symbolic import size_symbols

    C, H, W = size_symbols("C H W")
    net = convgen.Sequential(convgen.Conv2d(3, 8, 5))
    text = net.summary((C, H, W)).to_text()
    assert "  C == 3   (3 input channels (in_channels))" in text and "Eq(" not in text
    assert "`C == 3`" in net.summary((C, H, W)).to_markdown()
