"""Help > Guide, Glossary and the bundled model's card: offline pages in one browser dialog.

The pages are Markdown files shipped in ``resources/`` (``help/guide.md``,
``help/glossary.md`` and the bundled model's ``README.md``, with its
screenshots), shown by a ``QTextBrowser`` with no network access: links
between the pages open inside the dialog; nothing is fetched from outside.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHBoxLayout, QPushButton, QTextBrowser, QVBoxLayout, QWidget

from ioi_desktop.core.paths import bundled_model_dir, resource_path

TOPICS = ("guide", "glossary", "model_card")
_TITLES = {"guide": "Guide", "glossary": "Glossary", "model_card": "Bundled model card (ioi-mini)"}


def topic_path(topic: str) -> Path:
    """The Markdown file of a help topic."""
    if topic == "model_card":
        return bundled_model_dir() / "README.md"
    return resource_path("help", f"{topic}.md")


class HelpDialog(QDialog):
    """The guide, the glossary and the model card, offline; ``show_topic`` picks one."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("help_dialog")
        self.setWindowTitle("IOI Desktop help")
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)
        self.browser.setOpenLinks(False)
        self.browser.anchorClicked.connect(self._on_link)
        self.topic = ""
        self.buttons: dict[str, QPushButton] = {}
        row = QHBoxLayout()
        for topic in TOPICS:
            button = QPushButton(_TITLES[topic])
            button.setCheckable(True)
            button.setAutoDefault(False)  # only the checked button looks pressed
            button.clicked.connect(lambda _checked=False, t=topic: self.show_topic(t))
            self.buttons[topic] = button
            row.addWidget(button)
        row.addStretch(1)
        close = QDialogButtonBox(QDialogButtonBox.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.browser, 1)
        layout.addWidget(close)
        self.resize(820, 680)

    def show_topic(self, topic: str) -> None:
        path = topic_path(topic)
        self.topic = topic
        for name, button in self.buttons.items():
            button.setChecked(name == topic)
        self.setWindowTitle(f"IOI Desktop help — {_TITLES[topic]}")
        if not path.is_file():
            self.browser.setMarkdown(f"# {_TITLES[topic]}\n\nThis page is missing from the installation ({path}). "
                                     "Reinstall IOI Desktop to restore it.")
            return
        # Relative images (the model card's screenshots) resolve against the page's folder.
        self.browser.setSearchPaths([str(path.parent)])
        self.browser.document().setBaseUrl(QUrl.fromLocalFile(str(path.parent) + "/"))
        self.browser.setMarkdown(path.read_text(encoding="utf-8"))
        self.browser.verticalScrollBar().setValue(0)

    def text(self) -> str:
        return self.browser.toPlainText()

    def _on_link(self, url: QUrl) -> None:
        """Links between the help pages open here; anchors scroll; anything else is shown, not fetched."""
        target = url.toString()
        for topic in TOPICS:
            if topic_path(topic).name == Path(url.path()).name and not url.scheme().startswith("http"):
                self.show_topic(topic)
                return
        if target.startswith("#"):
            self.browser.scrollToAnchor(target[1:])
            return
        self.browser.setToolTip(f"{target} is outside the offline help.")
