"""The chapters as the website shows them: a notebook reader and a Sphinx extension, both named in ``_config.yml``.

* :func:`read_notebook` is the reader MyST-NB uses for ``.ipynb`` files (its ``nb_custom_formats`` option), so
  each page is built, and executed, from its notebook with the hidden tests removed (by nbgrader's own
  ``ClearHiddenTests``, as ``release`` removes them) and the ``### BEGIN/END SOLUTION`` marker lines dropped.
  The solution code stays on the page, collapsed behind a "Show solution" toggle (the ``hide-input`` tag).
* The extension (:func:`setup`) writes the student notebooks into the built site, at
  ``exercises/<chapter>/<notebook>.ipynb``, through the code path of ``python -m autograder release``
  (:func:`autograder.course.release`), and puts a download link to them under each chapter's title.
* It also copies the JavaScript the pages load -- MathJax, and RequireJS with the widget manager that renders
  ipywidgets -- from ``node_modules`` (the npm packages pinned in ``package.json``, installed by ``npm ci``)
  into ``_static``, so that no request leaves the site. ``_config.yml`` points ``mathjax_path`` and
  ``nb_ipywidgets_js`` there, and :func:`_adjust_page_scripts` fixes up each page's script list.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import tempfile
from pathlib import Path

import nbformat
from docutils import nodes
from nbgrader.preprocessors import ClearHiddenTests
from sphinx.errors import ExtensionError

from .course import find_assignments, release

__all__ = ["EXERCISES_DIR", "STATIC_ASSETS", "WIDGET_MANAGER_DIR", "read_notebook", "setup",
           "strip_solution_markers"]

#: Where the student notebooks go in the built site.
EXERCISES_DIR = "exercises"

#: The widget manager's folder, the same under node_modules and under _static (its scripts find their fonts by
#: their own path).
WIDGET_MANAGER_DIR = "@jupyter-widgets/html-manager/dist"

#: What the site serves from its own ``_static`` folder: {path under _static: path under node_modules}.
STATIC_ASSETS = {
    "mathjax": "mathjax/es5",  # MathJax 3, with its fonts and the extensions it loads on demand
    # embed-amd.js renders the widgets' saved state (RequireJS and the manager are pointed at _static by
    # _adjust_page_scripts)
    WIDGET_MANAGER_DIR: WIDGET_MANAGER_DIR,
    "requirejs/require.js": "requirejs/require.js",  # the module loader embed-amd.js needs
}

_SOLUTION_MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", flags=re.MULTILINE)


def read_notebook(text: str) -> nbformat.NotebookNode:
    """Read a chapter notebook for the website: hidden tests removed, solution markers dropped.

    Args:
        text: the notebook file's contents (JSON, nbformat 4).

    Returns:
        The notebook (nbformat 4) as the page shows and runs it.

    Raises:
        nbformat.reader.NotJSONError: if ``text`` is not a notebook.
        RuntimeError: from nbgrader, if a hidden-test region is unterminated, nested or outside a test cell.
    """
    nb = nbformat.reads(text, as_version=4)
    nb, _ = ClearHiddenTests().preprocess(nb, {})
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = strip_solution_markers(cell.source)
    return nb


def strip_solution_markers(source: str) -> str:
    """``source`` without its ``### BEGIN SOLUTION`` / ``### END SOLUTION`` lines; the code between them stays."""
    return _SOLUTION_MARKER.sub("", source)


def _chapter_notebooks(app) -> dict[str, tuple[str, str]]:
    """``{docname: (assignment id, notebook name)}`` for every chapter notebook of the book."""
    srcdir = Path(app.srcdir).resolve()
    found = {}
    for assignment in find_assignments(srcdir / "book").values():
        for name in assignment.notebooks:
            source = (assignment.path / f"{name}.ipynb").resolve()
            if source.is_relative_to(srcdir):
                found[source.relative_to(srcdir).with_suffix("").as_posix()] = (assignment.id, name)
    return found


def _write_exercises(app) -> None:
    """Write the student notebooks of every chapter to ``<html>/exercises/`` (builder-inited)."""
    app.course_chapter_notebooks = _chapter_notebooks(app)
    if app.builder.format != "html":
        return
    _node_modules(app)  # fail at the start of a build, not after every chapter has run
    with tempfile.TemporaryDirectory(prefix="autograder-site-") as work:
        release(Path(app.outdir) / EXERCISES_DIR, Path(work), book_dir=Path(app.srcdir) / "book")


def _node_modules(app) -> Path:
    """The npm packages' folder; raises ExtensionError, saying how to install them, if one is missing."""
    node_modules = Path(app.srcdir) / "node_modules"
    missing = [source for source in STATIC_ASSETS.values() if not (node_modules / source).exists()]
    if missing:
        raise ExtensionError(f"the site's JavaScript is not installed ({', '.join(missing)} missing in "
                             f"{node_modules}): run `npm ci` in {app.srcdir} (`make setup` does)")
    return node_modules


def _copy_static_assets(app, exception) -> None:
    """Copy MathJax, RequireJS and the widget manager into ``<html>/_static`` (build-finished)."""
    if exception is not None or app.builder.format != "html":
        return
    node_modules = _node_modules(app)
    static = Path(app.outdir) / "_static"
    for target, source in STATIC_ASSETS.items():
        if (node_modules / source).is_dir():
            shutil.copytree(node_modules / source, static / target, dirs_exist_ok=True)
        else:
            (static / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(node_modules / source, static / target)


def _add_download_link(app, doctree) -> None:
    """Put a box with the link to the chapter's student notebook under the title of a chapter page."""
    chapter = getattr(app, "course_chapter_notebooks", {}).get(app.env.docname)
    section = next(iter(doctree.findall(nodes.section)), None)
    if chapter is None or section is None:
        return
    assignment_id, name = chapter
    target = f"{EXERCISES_DIR}/{assignment_id}/{name}.ipynb"
    uri = posixpath.relpath(target, posixpath.dirname(app.env.docname) or ".")
    box = nodes.admonition(classes=["tip", "download-exercises"])
    box += nodes.title(text="Exercises")
    text = nodes.paragraph()
    text += nodes.Text("Download the student notebook ")
    text += nodes.reference("", f"{name}.ipynb", refuri=uri, classes=["download-exercises-link"])
    text += nodes.Text(" (solutions and hidden tests removed), complete the exercises in Jupyter, and check "
                       "your answers with ")
    text += nodes.literal(text=f"python -m autograder validate {name}.ipynb")
    text += nodes.Text(" before you submit.")
    box += text
    section.insert(1, box)  # right after the title


#: ipywidgets' widget manager typesets widget labels with MathJax 2's ``MathJax.Hub.Queue``; the site loads
#: MathJax 3, which has no ``Hub``. This gives it one that forwards to MathJax 3: on the configuration object
#: (for calls before MathJax has started) and again once MathJax 3 is ready (it replaces the global).
_MATHJAX2_QUEUE_FOR_WIDGETS = """(function () {
  var hub = {Queue: function (command) {
    var element = command[command.length - 1];
    if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
      window.MathJax.startup.promise.then(function () { return window.MathJax.typesetPromise([element]); });
    }
  }};
  var config = window.MathJax = window.MathJax || {};
  config.Hub = hub;
  config.startup = config.startup || {};
  config.startup.ready = function () { window.MathJax.startup.defaultReady(); window.MathJax.Hub = hub; };
})();"""


def _adjust_page_scripts(app, pagename, templatename, context, doctree) -> None:
    """Fix up the scripts a page loads (html-page-context).

    * Keep one of each: under Jupyter Book, sphinx-thebe and sphinx-togglebutton register their inline
      configuration scripts twice; a second ``const`` declaration is an error in the browser.
    * Serve the widget manager from this site: RequireJS resolves its modules, and the manager its fonts,
      relative to ``_static`` (``baseUrl``), and the manager's "CDN" for widget modules it does not bundle is
      ``_static`` too, so nothing is fetched from the network.
    * Give the widget manager the MathJax 2 call it makes (:data:`_MATHJAX2_QUEUE_FOR_WIDGETS`).
    """
    scripts = context.get("script_files")
    if not scripts:
        return
    static = context["pathto"]("_static", 1).rstrip("/") + "/"
    javascript = type(scripts[0])
    adjusted, seen = [], set()
    for script in scripts:
        filename = str(getattr(script, "filename", script) or "")
        attributes = dict(getattr(script, "attributes", {}))
        key = (filename, tuple(sorted(attributes.items())))
        if key in seen:
            continue
        seen.add(key)
        priority = getattr(script, "priority", 500)
        if filename.endswith(f"{WIDGET_MANAGER_DIR}/embed-amd.js"):
            adjusted.append(javascript(None, priority=priority, body=_MATHJAX2_QUEUE_FOR_WIDGETS))
            script = javascript(filename, priority=priority, **{**attributes, "data-jupyter-widgets-cdn": static})
        adjusted.append(script)
        if filename.endswith("requirejs/require.js"):
            adjusted.append(javascript(None, priority=priority, body=f"require.config({{baseUrl: '{static}'}});"))
    context["script_files"] = adjusted


def setup(app) -> dict:
    """Sphinx entry point: student notebooks, a download link on each chapter page, JavaScript served locally."""
    app.connect("builder-inited", _write_exercises)
    app.connect("doctree-read", _add_download_link)
    app.connect("build-finished", _copy_static_assets)
    app.connect("html-page-context", _adjust_page_scripts)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
