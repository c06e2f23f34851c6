"""Overview: does the model do the task, and what does it predict?

Bars show the logit difference logit(correct) - logit(incorrect) at END for
every prompt, on the clean prompt and on its corrupted partner (same
answers), so a working model has tall positive clean bars and negative
corrupted ones. Above them: the means and the accuracy (share of prompts
where the correct name beats the incorrect one). On the right, the selected
prompt's tokens with their named positions, its answers, and the model's
top-5 next tokens on the clean and the corrupted prompt. Clicking a bar
selects that prompt everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ioi_desktop.core.analyses import logit_diff
from ioi_desktop.core.selection import Selection
from ioi_desktop.gui.panels.result_panel import ResultPanel
from ioi_desktop.gui.widgets.bar_chart import BarChart
from ioi_desktop.gui.widgets.export import export_table_csv
from ioi_desktop.gui.widgets.token_strip import TokenStrip, TokenStripScroller

_EMPTY = "Run the logit-difference analysis to see how well the model does the task."


class OverviewPanel(ResultPanel):
    TITLE = "Overview"
    RESULTS = (logit_diff.Result,)
    RENDERS_SELECTION = True

    def __init__(self, selection, parent: QWidget | None = None) -> None:
        super().__init__(selection, parent)
        layout = QVBoxLayout(self)
        self.summary = QLabel(_EMPTY)
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.summary)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        self.bars = BarChart(title="Logit difference per prompt", category_title="prompt",
                             value_title="logit(correct) −<br>logit(incorrect)")
        self.bars.setMinimumWidth(280)
        self.bars.bar_clicked.connect(lambda index: self.selection.select_prompt(index))
        splitter.addWidget(self.bars)

        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(4, 0, 0, 0)
        self.prompt_label = QLabel("")
        self.prompt_label.setWordWrap(True)
        self.prompt_label.setTextFormat(Qt.TextFormat.RichText)
        side_layout.addWidget(self.prompt_label)
        self.strip = TokenStrip()
        side_layout.addWidget(TokenStripScroller(self.strip))
        self.top_table = QTableWidget(0, 4)
        # Short headers that fit a narrow column; the tooltips say it in full.
        self.top_table.setHorizontalHeaderLabels(["clean next", "p", "corrupted next", "p"])
        for column, tip in enumerate(("most likely next token on the clean prompt", "its probability",
                                      "most likely next token on the corrupted prompt", "its probability")):
            self.top_table.horizontalHeaderItem(column).setToolTip(tip)
        self.top_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.top_table.verticalHeader().setVisible(True)
        header = self.top_table.horizontalHeader()
        for column, mode in enumerate((QHeaderView.ResizeMode.Stretch, QHeaderView.ResizeMode.ResizeToContents,
                                       QHeaderView.ResizeMode.Stretch, QHeaderView.ResizeMode.ResizeToContents)):
            header.setSectionResizeMode(column, mode)
        side_layout.addWidget(self.top_table, 1)
        splitter.addWidget(side)
        splitter.setSizes([560, 420])
        layout.addWidget(splitter, 1)

    # ---------------------------------------------------------------- data
    def _answers(self, prompt: int) -> tuple[str, str] | None:
        correct = self.results.meta("correct")
        incorrect = self.results.meta("incorrect")
        if isinstance(correct, list) and isinstance(incorrect, list) and prompt < min(len(correct), len(incorrect)):
            return str(correct[prompt]), str(incorrect[prompt])
        return None

    def render_results(self) -> None:
        clean = self.results.array("logit_diff_clean")
        corrupt = self.results.array("logit_diff_corrupt")
        if clean is None:
            self.clear_views()
            self.summary.setText("These results have no logit differences; run the logit-difference analysis.")
            return
        series = {"clean": clean}
        if corrupt is not None:
            series["corrupted"] = corrupt
        self.bars.set_bars([str(i) for i in range(len(clean))], series)
        result = self.results.result(logit_diff.Result)
        text = (f"<b>Mean logit difference</b>: clean {result.mean_clean:+.4g}"
                + (f", corrupted {result.mean_corrupt:+.4g}" if result.mean_corrupt is not None else "")
                + f" &nbsp; <b>Accuracy</b> (correct beats incorrect): {100 * result.accuracy_clean:.0f}% of "
                  f"{len(clean)} prompts")
        if result.mean_p_correct_clean is not None:
            text += f" &nbsp; <b>Mean p(correct)</b>: {result.mean_p_correct_clean:.2f}"
        self.summary.setText(text)
        self._draw_prompt()

    def clear_views(self) -> None:
        self.bars.set_bars([], {})
        self.strip.set_tokens([])
        self.top_table.setRowCount(0)
        self.prompt_label.setText("")
        self.summary.setText(_EMPTY)

    def _prompt(self) -> int:
        clean = self.results.array("logit_diff_clean") if self.results is not None else None
        n = len(clean) if clean is not None else 1
        return min(self.selection.prompt, n - 1)

    def _top(self, which: str, prompt: int) -> list[tuple[str, float]]:
        ids = self.results.array(f"logit_diff_top_ids_{which}")
        probs = self.results.array(f"logit_diff_top_probs_{which}")
        texts = self.results.meta_of(f"logit_diff_top_ids_{which}", "token_text")
        if ids is None or probs is None or prompt >= ids.shape[0]:
            return []
        texts = texts if isinstance(texts, Mapping) else {}
        return [(str(texts.get(str(int(i)), f"#{int(i)}")), float(p)) for i, p in zip(ids[prompt], probs[prompt])]

    def _draw_prompt(self) -> None:
        if self.results is None or self.results.array("logit_diff_clean") is None:
            return
        prompt = self._prompt()
        self.bars.set_highlighted(prompt)
        clean = self.results.array("logit_diff_clean")
        corrupt = self.results.array("logit_diff_corrupt")
        tokens = self.results.tokens(prompt)
        self.strip.set_tokens(tokens, self.results.roles(prompt))
        answers = self._answers(prompt)
        text = f"<b>Prompt {prompt}</b>: logit difference {float(clean[prompt]):+.4g} clean"
        if corrupt is not None:
            text += f", {float(corrupt[prompt]):+.4g} corrupted"
        if answers is not None:
            text += f"<br>correct {answers[0]!r}, incorrect {answers[1]!r}"
        self.prompt_label.setText(text)
        clean_top, corrupt_top = self._top("clean", prompt), self._top("corrupt", prompt)
        rows = max(len(clean_top), len(corrupt_top))
        self.top_table.setRowCount(rows)
        self.top_table.setVerticalHeaderLabels([str(i + 1) for i in range(rows)])
        for row in range(rows):
            for column, entries in ((0, clean_top), (2, corrupt_top)):
                token, prob = entries[row] if row < len(entries) else ("", None)
                token_item = QTableWidgetItem(repr(token) if prob is not None else "")
                if answers is not None and token in answers:
                    font = token_item.font()
                    font.setBold(True)
                    token_item.setFont(font)
                    token_item.setToolTip("correct answer" if token == answers[0] else "incorrect answer")
                prob_item = QTableWidgetItem("" if prob is None else f"{prob:.3f}")
                prob_item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.top_table.setItem(row, column, token_item)
                self.top_table.setItem(row, column + 1, prob_item)

    def update_selection(self, selection: Selection, changed: frozenset) -> None:
        if "prompt" in changed:
            self._draw_prompt()

    # ------------------------------------------------------------- export
    def figures(self) -> list[tuple[str, QWidget]]:
        if self.results is None or self.results.array("logit_diff_clean") is None:
            return []
        return [("logit_diff_per_prompt", self.bars), ("prompt", self.strip)]

    def tables(self) -> list[tuple[str, Callable[[Path], Path]]]:
        if self.results is None or self.results.array("logit_diff_clean") is None:
            return []
        from ioi_desktop.core.figures import prompt_rows

        # Prompt texts (clean and corrupted), answers, named positions and both logit differences.
        header, rows = prompt_rows(self.results.run_meta, self.results.raw.results)
        n = len(rows)
        found = [("logit_diff", lambda path: export_table_csv(path, header, rows))]
        top_rows = []
        for i in range(n):
            for which in ("clean", "corrupt"):
                for rank, (token, prob) in enumerate(self._top(which, i), start=1):
                    top_rows.append((i, which, rank, token, prob))
        if top_rows:
            found.append(("top_tokens", lambda path: export_table_csv(
                path, ["prompt", "run", "rank", "token", "probability"], top_rows)))
        return found
