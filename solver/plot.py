"""Draw the trade-off plans (`tplan solve --plot FILE.svg|png`): training time against memory per
GPU, cost as colour, the plan answered marked. matplotlib is an optional extra
(`pip install 'tplan[plot]'`); it is imported only when a plot is asked for."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from .errors import InputError

FORMATS = (".svg", ".png")
GIB = 2**30


def check_target(path: str) -> None:
    """A plot file the command can write: .svg or .png, with matplotlib installed."""
    if Path(path).suffix.lower() not in FORMATS:
        raise InputError(path, "", f"a plot file ending in {' or '.join(FORMATS)}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError(path, "", "matplotlib installed for --plot (pip install 'tplan[plot]')") from None


def figure(path: str, plans: list, chosen) -> bytes:
    """The trade-off plans ((problem, assessment) each) drawn as ``path``'s format; ``chosen`` is the
    assessment the answer gives, marked when it is among them."""
    import matplotlib
    from matplotlib.figure import Figure

    hours = [assessment.values["train_seconds"] / 3600 for _, assessment in plans]
    memory = [assessment.values["memory_per_gpu"] / GIB for _, assessment in plans]
    cost = [assessment.values["cost"] for _, assessment in plans]
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "tplan"}):   # text as text, stable ids
        drawing = Figure(figsize=(7, 4.5), layout="constrained")
        axes = drawing.subplots()
        points = axes.scatter(hours, memory, c=cost, cmap="viridis", s=40)
        drawing.colorbar(points, ax=axes, label="cost")
        if chosen is not None:
            axes.scatter([chosen.values["train_seconds"] / 3600], [chosen.values["memory_per_gpu"] / GIB], marker="*",
                         s=300, facecolors="none", edgecolors="red", linewidths=1.5, label="the plan answered")
            axes.legend(loc="upper right")
        if len({problem.inputs["gpu.id"] for problem, _ in plans}) > 1:
            for (problem, _), x, y in zip(plans, hours, memory):
                axes.annotate(problem.inputs["gpu.id"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if hours and max(hours) > 10 * min(hours):
            axes.set_xscale("log")
        axes.set_xlabel("training time (h)")
        axes.set_ylabel("memory per GPU (GiB)")
        axes.set_title("Trade-offs: no plan is beaten on time, memory and cost at once")
        buffer = BytesIO()
        drawing.savefig(buffer, format=Path(path).suffix.lower()[1:], metadata={"Date": None} if
                        path.lower().endswith(".svg") else {"Software": None})
    return buffer.getvalue()
