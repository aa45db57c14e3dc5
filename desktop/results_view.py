"""The result grid: a list model of hits and the view (the delegate that draws a result is in result_delegate)."""

from __future__ import annotations

from collections import OrderedDict

from PySide6.QtCore import (
    QAbstractListModel,
    QMimeData,
    QModelIndex,
    QPoint,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QAction,
    QImage,
    QKeyEvent,
    QPainter,
    QPaintEvent,
    QPixmap,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QMenu,
    QMessageBox,
    QPushButton,
    QWidget,
)

from core.store import Hit
from desktop import files
from desktop.index_widgets import plural
from desktop.result_delegate import CELL, HIT_ROLE, QUERY_ROLE, UNREADABLE_ROLE, AnyIndex, ResultDelegate
from desktop.thumbnails import ThumbnailLoader, thumbnail_key

OPEN_WITHOUT_ASKING = 5  # files opened at once without a question (issue 14: Ctrl+A over 1,000 results)
PIXMAP_CACHE = 600  # ~60 MB of decoded 160 px thumbnails; results beyond it are re-read from the disk cache
# How the grid orders results: key -> menu text. "folder" groups them, folders in the order of their best hit.
SORTS = {"similarity": "Similarity", "date": "Date (Newest First)", "name": "Name", "folder": "Folder (Grouped)"}


def ordered(hits: list[Hit], sort: str) -> list[Hit]:
    """`hits` (best first, as the kNN search returns them) in the order `sort` (a key of SORTS) names.
    Every order is stable, so results equal in that order stay best first."""
    if sort == "date":
        return sorted(hits, key=lambda h: -h.record.mtime_ns)
    if sort == "name":
        return sorted(hits, key=lambda h: (h.record.name.casefold(), h.record.path))
    if sort == "folder":
        rank: dict[str, int] = {}
        for hit in hits:
            rank.setdefault(hit.record.folder, len(rank))
        return sorted(hits, key=lambda h: rank[h.record.folder])
    return list(hits)


class ResultsModel(QAbstractListModel):
    """Hits, best first. Thumbnails are asked for when a row is first drawn and arrive asynchronously."""

    def __init__(self, loader: ThumbnailLoader, device_pixel_ratio: float = 1.0, parent: QWidget | None = None):
        super().__init__(parent)
        self._loader = loader
        self._dpr = device_pixel_ratio
        self._hits: list[Hit] = []  # in the grid's order
        self._best_first: list[Hit] = []  # as the search returned them
        self.sort = "similarity"  # a key of SORTS
        self._rows: dict[str, list[int]] = {}
        self._pixmaps: OrderedDict[str, QPixmap] = OrderedDict()
        self._unreadable: set[str] = set()
        self._requested: set[str] = set()
        self.query_path: str | None = None
        loader.loaded.connect(self._thumbnail_loaded)

    # -- contents ---------------------------------------------------------------------------------
    def set_hits(self, hits: list[Hit]) -> None:
        """A new result list, best first; the grid shows it in the order of `sort`."""
        self.beginResetModel()
        self._best_first = list(hits)
        self._hits = ordered(self._best_first, self.sort)
        self._rows = {}
        for row, hit in enumerate(self._hits):
            self._rows.setdefault(thumbnail_key(hit.record), []).append(row)
        self._loader.clear()  # the old list's unstarted requests are no longer wanted...
        self._requested.clear()  # ...so they may be asked for again
        self.endResetModel()

    def set_sort(self, sort: str) -> None:
        """Reorder the results shown (a key of SORTS); thumbnails already loaded stay."""
        if sort not in SORTS:
            raise ValueError(f"unknown sort {sort!r}: one of {', '.join(SORTS)}")
        self.sort = sort
        self.layoutAboutToBeChanged.emit()
        old = self._hits
        self._hits = ordered(self._best_first, sort)
        self._rows = {}
        for row, hit in enumerate(self._hits):
            self._rows.setdefault(thumbnail_key(hit.record), []).append(row)
        new_row = {id(hit): row for row, hit in enumerate(self._hits)}
        persistent = self.persistentIndexList()  # the selection and current result follow their rows
        self.changePersistentIndexList(persistent, [self.index(new_row[id(old[i.row()])]) for i in persistent])
        self.layoutChanged.emit()

    def set_query_path(self, path: str | None) -> None:
        """The query's own file, marked where it appears among the results (as the web page does)."""
        self.query_path = path

    def hits(self) -> list[Hit]:
        return list(self._hits)

    def hit(self, index: AnyIndex) -> Hit | None:
        return self._hits[index.row()] if index.isValid() and index.row() < len(self._hits) else None

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._hits)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole):
        hit = self.hit(index)
        if hit is None:
            return None
        record = hit.record
        if role == Qt.ItemDataRole.DisplayRole:
            return record.name
        if role == Qt.ItemDataRole.ToolTipRole:
            return (f"{record.path}\n{record.width} × {record.height} px, {files.human_size(record.size)}"
                    f"\nsimilarity {hit.score:.3f}" + ("\nthe query image" if record.path == self.query_path else ""))
        if role == QUERY_ROLE:
            return record.path == self.query_path
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnail(hit)
        if role == HIT_ROLE:
            return hit
        if role == UNREADABLE_ROLE:
            return thumbnail_key(hit.record) in self._unreadable
        return None

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else base

    # -- dragging results out as files ------------------------------------------------------------
    def mimeTypes(self) -> list[str]:
        return ["text/uri-list", "text/plain"]

    def mimeData(self, indexes: list[QModelIndex]) -> QMimeData:
        return files.file_mime([h.record.path for i in indexes if (h := self.hit(i)) is not None])

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction

    # -- thumbnails -------------------------------------------------------------------------------
    def thumbnail(self, hit: Hit) -> QPixmap | None:
        """The cached pixmap, or None after asking the loader for it (once)."""
        key = thumbnail_key(hit.record)
        pixmap = self._pixmaps.get(key)
        if pixmap is not None:
            self._pixmaps.move_to_end(key)
            return pixmap
        if key not in self._requested and key not in self._unreadable:
            self._requested.add(key)
            self._loader.request(hit.record)
        return None

    def thumbnail_ready(self, row: int) -> bool:
        key = thumbnail_key(self._hits[row].record)
        return key in self._pixmaps or key in self._unreadable

    def _thumbnail_loaded(self, key: str, image: QImage) -> None:
        self._requested.discard(key)
        if image.isNull():
            self._unreadable.add(key)
        else:
            pixmap = QPixmap.fromImage(image)
            pixmap.setDevicePixelRatio(self._dpr)
            self._pixmaps[key] = pixmap
            while len(self._pixmaps) > PIXMAP_CACHE:
                self._pixmaps.popitem(last=False)
        for row in self._rows.get(key, ()):
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


class ResultsView(QListView):
    """The grid. Double-click or Enter on a result asks to refine the search from it."""

    refine_requested = Signal(object)  # Hit
    tags_requested = Signal()  # Tags… for the selected results
    said = Signal(str)  # a short message for the status bar (a file action failed, paths were copied)

    def __init__(self, model: ResultsModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.setModel(model)
        self.setItemDelegate(ResultDelegate(self))
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setUniformItemSizes(True)  # layout of 1000 results without measuring each
        self.setGridSize(CELL + QSize(6, 6))
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(CELL.height() // 4)
        self.setMouseTracking(True)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self.doubleClicked.connect(self._refine)
        self.placeholder = ""
        self.placeholder_action: QAction | None = None
        self.placeholder_button = QPushButton(self.viewport())  # the empty grid's next step, e.g. Index Folder…
        self.placeholder_button.clicked.connect(lambda: self.placeholder_action and self.placeholder_action.trigger())
        self.placeholder_button.hide()
        model.modelReset.connect(self._place_button)

    def results(self) -> ResultsModel:
        model = self.model()
        assert isinstance(model, ResultsModel)
        return model

    def set_placeholder(self, text: str, action: QAction | None = None) -> None:
        """What an empty grid says, and optionally a button for the next step."""
        self.placeholder, self.placeholder_action = text, action
        if action is not None:
            self.placeholder_button.setText(action.text().replace("&", ""))
        self._place_button()
        self.viewport().update()

    def _place_button(self) -> None:
        button = self.placeholder_button
        button.setVisible(self.placeholder_action is not None and self.model().rowCount() == 0)
        button.adjustSize()
        area = self.viewport().rect()
        button.move(area.center().x() - button.width() // 2, area.center().y() + 40)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place_button()

    def selected_hits(self) -> list[Hit]:
        rows = sorted(i.row() for i in self.selectionModel().selectedIndexes())
        return [h for r in rows if (h := self.results().hit(self.results().index(r))) is not None]

    def visible_thumbnails_ready(self) -> bool:
        """Every result on screen has its thumbnail (or is known unreadable): used by --screenshot."""
        model = self.results()
        area = self.viewport().rect()
        shown = [r for r in range(model.rowCount()) if self.visualRect(model.index(r)).intersects(area)]
        return bool(shown) and all(model.thumbnail_ready(r) for r in shown)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentIndex().isValid():
            self._refine(self.currentIndex())
            return
        super().keyPressEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if self.model().rowCount() == 0 and self.placeholder:
            painter = QPainter(self.viewport())
            painter.setPen(self.palette().placeholderText().color())
            area = self.viewport().rect().adjusted(40, 40, -40, -40)
            if self.placeholder_action is not None:
                area.setBottom(area.center().y() + 30)  # the text above the button
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder)

    def _refine(self, index: AnyIndex) -> None:
        hit = self.results().hit(index)
        if hit is not None:
            self.refine_requested.emit(hit)

    def _context_menu(self, pos: QPoint) -> None:
        index = self.indexAt(pos)
        if index.isValid():
            if not self.selectionModel().isSelected(index):
                self.setCurrentIndex(index)
            self.context_menu(index).popup(self.viewport().mapToGlobal(pos))

    def context_menu(self, index: AnyIndex) -> QMenu:
        """Find Similar for the result under the mouse; Open and Copy Path for every selected one."""
        hit = self.results().hit(index)
        assert hit is not None
        paths = [h.record.path for h in self.selected_hits()] or [hit.record.path]

        def open_all() -> None:
            self.open_files(paths)

        def reveal() -> None:
            if not files.reveal(hit.record.path):
                self.said.emit(f"No file manager could show {hit.record.path}.")

        def copy() -> None:
            files.copy_paths(paths)
            self.said.emit(f"Copied {plural(len(paths), 'path')}.")

        menu = QMenu(self)
        menu.addAction("Find Similar", lambda: self.refine_requested.emit(hit))
        menu.addSeparator()
        menu.addAction("Open" if len(paths) <= OPEN_WITHOUT_ASKING else f"Open {len(paths)} Files…", open_all)
        menu.addAction("Reveal in Folder", reveal)
        menu.addAction("Copy Path" if len(paths) == 1 else f"Copy {len(paths)} Paths", copy)
        menu.addSeparator()
        menu.addAction("Tags…", self.tags_requested.emit)
        return menu

    def open_files(self, paths: list[str]) -> None:
        """Open each file with its default app, asking first for more than a handful; says which failed."""
        if len(paths) > OPEN_WITHOUT_ASKING and QMessageBox.question(
                self, "Open Files", f"Open {len(paths)} files, each in its own window?") != \
                QMessageBox.StandardButton.Yes:
            return
        failed = [p for p in paths if not files.open_file(p)]
        if failed:
            self.said.emit(f"No app could open {failed[0]}" + (f" and {len(failed) - 1} more." if len(failed) > 1
                                                              else "."))
