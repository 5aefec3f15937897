"""The figure class every plot returns: a matplotlib ``Figure`` that shows itself.

Plots are built with the object API on an Agg canvas, never through pyplot, so they
leak no open figures and do not depend on the session's backend. Such a figure has no
pyplot manager, and a fresh Jupyter kernel only registers its inline PNG formatter once
pyplot has been imported; so a plain ``Figure`` displays as ``<Figure size ...>`` and
``fig.show()`` raises. :class:`InlineFigure` fixes both:

* ``_repr_png_``: IPython (Jupyter, VS Code, Colab) displays it as a PNG when it is a
  cell's value, with no ``%matplotlib`` magic. Where pyplot's inline backend is active
  its own Figure formatter takes precedence, so the figure is drawn once either way.
* ``show()``: in a notebook, displays it; in a script with an interactive pyplot
  backend, opens it in a window (as ``Figure.show`` does for pyplot figures); headless
  (Agg), warns as matplotlib does and draws nothing.

``savefig`` works everywhere, as for any ``Figure``.
"""

from __future__ import annotations

import io
import warnings

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["InlineFigure", "new_figure"]


def _in_notebook() -> bool:
    """Whether an IPython kernel (Jupyter and friends, not a terminal IPython) runs us."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class InlineFigure(Figure):
    """A ``Figure`` on an Agg canvas that displays in notebooks and shows in scripts."""

    #: Resolution of the PNG a notebook displays.
    repr_dpi = 100

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=self.repr_dpi, bbox_inches="tight", pad_inches=0.1)
        return buf.getvalue()

    def show(self, warn: bool = True) -> None:
        """Display the figure: inline in a notebook, in a window under a GUI backend.

        Headless (a non-interactive backend such as Agg) it warns, as
        ``matplotlib.figure.Figure.show`` does, and draws nothing: save it instead
        (``fig.savefig`` or :func:`grok_interp.viz.save_figure`).
        """
        if self.canvas.manager is not None:  # already adopted by pyplot
            return super().show(warn)
        if _in_notebook():
            from IPython.display import display

            display(self)
            return
        import matplotlib
        from matplotlib.backends import BackendFilter, backend_registry

        backend = matplotlib.get_backend()
        interactive = backend.lower() in backend_registry.list_builtin(BackendFilter.INTERACTIVE)
        if not interactive:
            if warn:
                warnings.warn(
                    f"the {backend!r} backend is non-interactive, so the figure cannot be shown; "
                    "save it with fig.savefig(...) or grok_interp.viz.save_figure(...)",
                    UserWarning,
                    stacklevel=2,
                )
            return
        canvas_class = backend_registry.load_backend_module(backend).FigureCanvas  # the session's GUI canvas
        manager = canvas_class.new_manager(self, id(self))
        manager.show()


def new_figure(width: float, height: float) -> InlineFigure:
    """An :class:`InlineFigure` of ``width x height`` inches, constrained layout, Agg canvas."""
    fig = InlineFigure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig
