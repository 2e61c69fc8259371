"""The explorer's HTML: one self-contained file (template + data + figure + plotly.js inlined).

plotly.js is the copy bundled with the plotly Python package (``plotly.offline.get_plotlyjs``).
It is 4.8 MB, which alone would nearly fill the 5 MB budget of a page, so it is embedded
gzip-compressed and base64-encoded (2.0 MB) and unpacked by the browser's own
``DecompressionStream`` — still inlined, nothing is fetched. The figure's traces and layout are
built here with ``plotly.graph_objects`` (validated property names); the page's small script
only fills in coordinates looked up in the embedded data at the sliders' grid indices.

Output is deterministic: the same data gives the same bytes (gzip ``mtime=0``, sorted nothing
that is not already ordered, no timestamps).
"""
from __future__ import annotations

import base64
import gzip
import importlib.resources
import json
import re


def _json_for_script(obj) -> str:
    """JSON safe inside ``<script>``: ``<`` only occurs in strings, where ``\\u003c`` means the same."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False).replace("<", "\\u003c")


def figure(data: dict) -> dict:
    """Trace templates (style, no coordinates) + layout, and what each trace shows (``bindings``)."""
    import plotly.graph_objects as go

    ternary = data["view"] == "ternary"
    labels = data["problem"]["labels"]
    traces, bindings = [], []

    def add(trace, kind, objective=None):
        traces.append(trace)
        bindings.append({"kind": kind} if objective is None else {"kind": kind, "objective": objective})

    ax = data["ternary_axes"]
    coord = "π = (" + ", ".join(f"%{{{k}:.6f}}" for k in sorted(ax, key=lambda k: ax[k])) + ")"
    for i, o in enumerate(data["objectives"]):
        rlhf = o["role"] == "counterpart" or o["loss"] == "rlhf"
        col, grp, name = o["color"], o["label"], o["name"]
        if ternary:
            add(go.Scatterternary(mode="lines", name=name, legendgroup=grp, line=dict(color=col, width=2, dash="dash" if rlhf else "solid"),
                                  hovertemplate=f"<b>{name}</b><br>Adam, logged step<br>{coord}<extra></extra>"), "trajectory", i)
            add(go.Scatterternary(mode="markers", name=name, legendgroup=grp, showlegend=False,
                                  marker=dict(symbol="diamond-open" if rlhf else "circle-open", size=12, color=col, line=dict(width=2)),
                                  hovertemplate=f"<b>{name}</b><br>Adam at the step budget<br>{coord}<extra></extra>"), "budget", i)
            add(go.Scatterternary(mode="markers", name=name, legendgroup=grp, showlegend=False,
                                  marker=dict(symbol="diamond" if rlhf else "circle", size=10 if rlhf else 11, color=col, line=dict(color="black", width=1)),
                                  hovertemplate=f"<b>{name}</b><br>exact constrained optimum<br>{coord}<extra></extra>"), "exact", i)
            add(go.Scatterternary(mode="markers", name=name, legendgroup=grp, showlegend=False,
                                  marker=dict(symbol="x-thin-open", size=12, color=col, line=dict(width=2.5, color=col)),
                                  hovertemplate=f"<b>{name}</b><br>unconstrained closed form<br>{coord}<extra></extra>"), "closed", i)
        else:
            add(go.Bar(name=name, legendgroup=grp, offsetgroup=grp, marker=dict(color=col, line=dict(color="black", width=0.5)),
                       hovertemplate=f"<b>{name}</b><br>exact optimum: %{{y:.6f}}<extra>%{{x}}</extra>"), "exact", i)
            add(go.Scatter(mode="markers", name=name, legendgroup=grp, offsetgroup=grp, showlegend=False,
                           marker=dict(symbol="circle-open", size=10, color="black", line=dict(width=1.5)),
                           hovertemplate=f"<b>{name}</b><br>Adam at the step budget: %{{y:.6f}}<extra>%{{x}}</extra>"), "budget", i)
            add(go.Scatter(mode="markers", name=name, legendgroup=grp, offsetgroup=grp, showlegend=False,
                           marker=dict(symbol="x-thin-open", size=10, color="black", line=dict(width=2)),
                           hovertemplate=f"<b>{name}</b><br>closed form: %{{y:.6f}}<extra>%{{x}}</extra>"), "closed", i)
    if ternary:
        add(go.Scatterternary(mode="markers", name="π_ref (start)", marker=dict(symbol="square", size=11, color="white", line=dict(color="black", width=2)),
                              hovertemplate=f"<b>π_ref</b><br>{coord}<extra></extra>"), "ref")
        add(go.Scatterternary(mode="markers", name="π* (target)", marker=dict(symbol="star", size=17, color="gold", line=dict(color="black", width=1)),
                              hovertemplate=f"<b>π*</b><br>{coord}<extra></extra>"), "star")
        names = {k: labels[v] for k, v in ax.items()}
        axis = lambda k: dict(title=dict(text=f"π({names[k]})"), min=0, linewidth=1.5, ticks="outside", tickformat=".2f", gridcolor="#e6e6e6")  # noqa: E731
        layout = go.Layout(ternary=dict(sum=1, aaxis=axis("a"), baxis=axis("b"), caxis=axis("c"), bgcolor="#fcfcfc"),
                           legend=dict(orientation="h", y=-0.08, x=0.0, font=dict(size=11)), margin=dict(l=50, r=50, t=60, b=40),
                           paper_bgcolor="white", hovermode="closest")
    else:
        add(go.Scatter(mode="markers", name="π_ref", marker=dict(symbol="line-ew-open", size=26, color="black", line=dict(width=2)),
                       hovertemplate="<b>π_ref</b>: %{y:.6f}<extra>%{x}</extra>"), "ref")
        add(go.Scatter(mode="markers", name="π*", marker=dict(symbol="star", size=13, color="gold", line=dict(color="black", width=1)),
                       hovertemplate="<b>π*</b>: %{y:.6f}<extra>%{x}</extra>"), "star")
        layout = go.Layout(barmode="group", scattermode="group", yaxis=dict(title=dict(text="probability"), rangemode="tozero"),
                           xaxis=dict(title=dict(text="response")), legend=dict(orientation="h", y=-0.15),
                           margin=dict(l=60, r=20, t=60, b=60), paper_bgcolor="white", plot_bgcolor="#fcfcfc")
    fig = go.Figure(data=traces, layout=layout)
    spec = json.loads(fig.to_json())
    spec.pop("layout", None)
    return {"data": spec["data"], "layout": json.loads(go.Figure(layout=layout).to_json())["layout"], "bindings": bindings}


def plotly_js() -> tuple[str, str]:
    """(version, gzip+base64 of the bundled plotly.min.js)."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    return get_plotlyjs_version(), base64.b64encode(gzip.compress(get_plotlyjs().encode(), compresslevel=9, mtime=0)).decode()


def render(data: dict) -> str:
    """The page as one HTML string."""
    import html

    import jax

    import bandit_lab

    version, js = plotly_js()
    data = {**data, "versions": {"bandit_lab": getattr(bandit_lab, "__version__", _dist_version()), "jax": jax.__version__, "plotly_js": version}}
    template = importlib.resources.files("bandit_lab.explore").joinpath("template.html").read_text(encoding="utf-8")
    fill = {"__TITLE__": html.escape(str(data["title"])), "__PLOTLY_VERSION__": html.escape(version),
            "__FIGURE__": _json_for_script(figure(data)), "__DATA__": _json_for_script(data), "__PLOTLY_GZ__": js}
    pattern = re.compile("|".join(fill))
    assert sorted(pattern.findall(template)) == sorted(fill), "template placeholders"
    return pattern.sub(lambda m: fill[m.group(0)], template)  # one pass: filled text is never rescanned


def _dist_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("bandit-lab")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "source"
