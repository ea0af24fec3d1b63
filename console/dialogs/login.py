"""The login dialog: operator name and password checked against the store's operators on the
engine thread (a core.desk.queries.Login, each try audited by core.desk.operators.authenticate); a
refusal is shown inline and the demo identities are hinted when the store still has them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from core.desk.operators import Operator
from core.desk.queries import Login, LoginInfo
from core.model.errors import InputError
from core.model.operations import Refusal


class LoginDialog(QDialog):
    """Accepted only with a logged-in operator in `operator`. `ask` sends the Login to the
    engine thread and calls back with the Operator or the Refusal; `info` is who may log in."""

    def __init__(
        self,
        ask: Callable[[object, Callable[[Any], None]], None],
        info: LoginInfo,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("login-dialog")
        self.setWindowTitle("Log in to the risk console")
        self.ask = ask
        self.info = info
        self.operator: Operator | None = None
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("login-name")
        self.password_edit = QLineEdit()
        self.password_edit.setObjectName("login-password")
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.error_label = QLabel()
        self.error_label.setObjectName("login-error")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b91c1c;")
        self.error_label.hide()
        form = QFormLayout()
        form.addRow("Operator", self.name_edit)
        form.addRow("Password", self.password_edit)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        self.hint_label = QLabel()
        self.hint_label.setObjectName("login-hint")
        self.hint_label.setWordWrap(True)
        if info.demo_hint:
            rows = "".join(
                f"<tr><td><b>{name}</b></td><td>{role}</td><td><code>{password}</code></td></tr>"
                for name, role, password in info.demo_hint
            )
            self.hint_label.setText(
                "This store has the demo identities (docs/operators.md):"
                f"<table cellspacing='6'>{rows}</table>"
            )
        else:
            self.hint_label.hide()
        layout.addWidget(self.hint_label)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Log in")
        self.buttons.accepted.connect(self.try_login)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.name_edit.setFocus()

    def try_login(self) -> bool:
        """Send the typed name and password to be checked (False: no name typed); the answer
        accepts the dialog or shows why not. The button waits for it."""
        name = self.name_edit.text().strip()
        if not name:
            return self._refused("Type your operator name.", self.name_edit)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)
        self.ask(Login(name, self.password_edit.text()), self.answered)
        return True

    def answered(self, answer: object) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(True)
        if isinstance(answer, Refusal):
            self._refused(answer.reason, self.password_edit)
            return
        if isinstance(answer, InputError):
            widget = self.name_edit if answer.field == "name" else self.password_edit
            self._refused(f"{answer.field}: {answer.message}", widget)
            return
        if not isinstance(answer, Operator):
            return
        self.operator = answer
        self.password_edit.clear()
        self.error_label.hide()
        self.accept()

    def _refused(self, text: str, focus: QLineEdit) -> bool:
        self.error_label.setText(text)
        self.error_label.show()
        self.password_edit.clear()
        focus.setFocus()
        return False
