"""The window's actions (menu items, toolbar buttons, shortcuts), made once and shared by menus and toolbar."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from types import SimpleNamespace

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMessageBox

from desktop import folders
from desktop.results_view import SORTS
from desktop.style import icon


def _action(window: QMainWindow, text: str, slot: Callable[[], object], shortcut: str | None = None,
            icon_name: str | None = None, tip: str | None = None) -> QAction:
    action = QAction(text, window)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    if icon_name:
        action.setIcon(icon(icon_name))
    if tip:
        action.setToolTip(tip)
        action.setStatusTip(tip)
    action.triggered.connect(lambda _checked=False: slot())
    window.addAction(action)  # shortcuts work while the menu bar is hidden too
    return action


def build_actions(w) -> SimpleNamespace:
    """Actions bound to the window `w`'s slots, plus its menu bar and toolbar."""
    a = SimpleNamespace(
        open=_action(w, "&Open Image…", w.pane.open_file, "Ctrl+O", "open", "Search with an image file"),
        paste=_action(w, "&Paste Image", w.pane.paste, "Ctrl+V", "paste",
                      "Search with the image, file or URL on the clipboard"),
        index=_action(w, "&Index Folder…", partial(folders.index_folder, w), "Ctrl+I", "index",
                      "Add a folder of images to the index"),
        rescan=_action(w, "&Re-scan All", partial(folders.rescan, w), "F5", "rescan",
                       "Bring every indexed folder up to date (new, changed, deleted files)"),
        remove=_action(w, "Remo&ve Folder…", partial(folders.remove_folder, w), None, "remove",
                       "Forget the images under a folder (the files stay on disk)"),
        settings=_action(w, "&Settings…", w.open_settings, "Ctrl+,", "settings"),
        quit=_action(w, "&Quit", w.close, "Ctrl+Q"),
        back=_action(w, "&Back", w.search.go_back, "Alt+Left", "back", "Previous query (Alt+Left)"),
        forward=_action(w, "&Forward", w.search.go_forward, "Alt+Right", "forward", "Next query (Alt+Right)"),
        similar=_action(w, "Find &Similar", w.refine_selected, None, "similar",
                        "Search with the selected result (Enter, or double-click it)"),
        tags=_action(w, "&Tags…", w.edit_tags, "Ctrl+T", None, "Add or remove tags on the selected results"),
        find=_action(w, "&Filter Results", w.focus_filter, "Ctrl+F", None, "Filter by file or folder name"),
        clear_filter=_action(w, "Clear Name Filter", w.controls.text_filter.clear, "Esc", None,
                             "Clear the name filter (Esc)"),
        clear_query=_action(w, "Clear &Query", w.search.clear, None, None, "Start again: no query, no results"),
        clear_filters=_action(w, "&Clear Filters", w.controls.clear, None, None,
                              "Show every result again (similarity 0 to 1, no name filter)"),
        duplicates=_action(w, "Find &Duplicates…", w.find_duplicates, None, "duplicates",
                           "Groups of near-identical images in the index"),
        labels=_action(w, "&Label Images…", lambda: w.jobs.label_images(), None, None,  # jobs: made after the menus
                       "Name what is in the images indexed before labels were turned on (Settings: labels)"),
        web=_action(w, "Open &Web Page", w.open_web_page, None, None, "The search page the built-in HTTP API serves"),
        quick_look=_action(w, "&Quick Look", w.quick_look, "Space", None,
                           "The selected result large: zoom with the wheel or +/-, drag to pan, Esc closes"),
        folders=_action(w, "&Manage Folders…", w.manage_folders, None, None,
                        "The indexed folders: image counts, last scan; add, re-scan, remove"),
        about=_action(w, "&About", w.about),
        shortcuts=_action(w, "&Keyboard Shortcuts", lambda: show_shortcuts(w), "F1"),
    )
    # Space belongs to the grid: in the name filter it types a space.
    w.removeAction(a.quick_look)
    w.view.addAction(a.quick_look)
    a.quick_look.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
    a.details = w.details.toggleViewAction()
    a.details.setText("&Details Panel")
    a.details.setShortcut(QKeySequence("Ctrl+D"))
    a.details.setStatusTip("Preview, size, dimensions, date and similarity of the selected result")
    w.addAction(a.details)
    a.sorts = QActionGroup(w)
    for key, text in SORTS.items():
        action = a.sorts.addAction(text)
        action.setCheckable(True)
        action.setData(key)
        action.setChecked(key == w.model.sort)
    a.sorts.triggered.connect(lambda action: w.set_sort(action.data()))
    a.settings.setMenuRole(QAction.MenuRole.PreferencesRole)
    a.quit.setMenuRole(QAction.MenuRole.QuitRole)
    bar = w.menuBar()
    file_menu = bar.addMenu("&File")
    file_menu.addActions([a.open, a.paste])
    file_menu.addSeparator()
    file_menu.addActions([a.index, a.rescan, a.remove, a.folders])
    file_menu.addSeparator()
    file_menu.addAction(a.settings)
    file_menu.addSeparator()
    file_menu.addAction(a.quit)
    bar.addMenu("&Edit").addAction(a.tags)
    view_menu = bar.addMenu("&View")
    view_menu.addActions([a.details, a.quick_look])
    view_menu.addSeparator()
    view_menu.addMenu("&Sort By").addActions(a.sorts.actions())
    bar.addMenu("&Go").addActions([a.back, a.forward, a.similar, a.find, a.clear_filters, a.clear_query])
    bar.addMenu("&Tools").addActions([a.duplicates, a.labels, a.web])
    bar.addMenu("&Help").addActions([a.shortcuts, a.about])
    toolbar = w.addToolBar("Main")
    toolbar.setObjectName("mainToolbar")
    toolbar.setMovable(False)
    toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    toolbar.addActions([a.open, a.paste])
    toolbar.addSeparator()
    toolbar.addActions([a.index, a.rescan])
    toolbar.addSeparator()
    toolbar.addActions([a.duplicates, a.settings])
    return a


def shortcuts_text(w) -> str:
    """Every action that has a shortcut, as an HTML table (from the actions themselves: one list, never stale)."""
    rows = [(a.shortcut().toString(QKeySequence.SequenceFormat.NativeText), a.text().replace("&", ""))
            for a in vars(w.act).values() if isinstance(a, QAction) and not a.shortcut().isEmpty()]
    rows += [("+ / − / 0, wheel, drag", "Quick Look: zoom in / out / fit, zoom, pan")]
    rows += [("Enter, double-click", "Find Similar (the selected result)"), ("Mouse back / forward", "Back / Forward")]
    return "<table>" + "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{t}</td></tr>" for k, t in rows) + "</table>"


def show_shortcuts(w) -> None:
    box = w.shortcuts_box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard Shortcuts", shortcuts_text(w),
                                       QMessageBox.StandardButton.Close, w)
    box.open()
