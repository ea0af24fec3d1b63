"""The login dialog: operator name and password checked against the store's operators (each try
audited by core.operators.authenticate); a refusal is shown inline and the demo identities are
hinted when the store still has them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlite_utils
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from core.controls import Refusal
from core.errors import InputError
from core.operators import DEMO_IDENTITIES, Operator, authenticate, list_operators


@dataclass(frozen=True, slots=True)
class LoginState:
    """What the dialog needs: a way to check a name and password (raising Refusal or InputError)
    and the demo identities to hint, empty on a store with real operators."""

    authenticate: Callable[[str, str], Operator]
    demo_hint: tuple[tuple[str, str, str], ...] = ()


def store_login(
    db: sqlite_utils.Database, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> LoginState:
    """A LoginState against the store `db`. The demo identities are hinted only while every one
    of them is still in the store (a real desk removes or replaces them)."""
    names = {o.name for o in list_operators(db, include_disabled=False)}
    demo = tuple((d.name, d.role, d.password) for d in DEMO_IDENTITIES)
    hint = demo if {d[0] for d in demo} <= names else ()
    return LoginState(lambda name, password: authenticate(db, name, password, at=clock()), hint)


class LoginDialog(QDialog):
    """Accepted only with a logged-in operator in `operator`."""

    def __init__(self, state: LoginState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("login-dialog")
        self.setWindowTitle("Log in to the risk console")
        self.state = state
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
        if state.demo_hint:
            rows = "".join(
                f"<tr><td><b>{name}</b></td><td>{role}</td><td><code>{password}</code></td></tr>"
                for name, role, password in state.demo_hint
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
        """Check the typed name and password; accept on success, show why not otherwise."""
        name = self.name_edit.text().strip()
        if not name:
            return self._refused("Type your operator name.", self.name_edit)
        try:
            self.operator = self.state.authenticate(name, self.password_edit.text())
        except Refusal as refusal:
            return self._refused(refusal.reason, self.password_edit)
        except InputError as error:
            widget = self.name_edit if error.field == "name" else self.password_edit
            return self._refused(f"{error.field}: {error.message}", widget)
        self.password_edit.clear()
        self.error_label.hide()
        self.accept()
        return True

    def _refused(self, text: str, focus: QLineEdit) -> bool:
        self.error_label.setText(text)
        self.error_label.show()
        self.password_edit.clear()
        focus.setFocus()
        return False
