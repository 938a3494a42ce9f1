"""The invented people and places every benchmark uses: fictional names, example.org only."""

from __future__ import annotations

from sgalert.model import Role

PASSPHRASE = "correct horse battery staple"
PEOPLE: tuple[tuple[str, str, Role], ...] = (
    ("Dana Fictional", "dsl@example.org", Role.DSL),
    ("Devi Invented", "deputy@example.org", Role.DEPUTY),
    ("Hal Madeup", "head@example.org", Role.HEAD),
)
FIRST_NAMES = (
    "Ada", "Ben", "Cleo", "Dev", "Elif", "Finn", "Gus", "Hana", "Ira", "Jude", "Kemi", "Leo",
    "Mira", "Noor", "Ozzy", "Pip", "Quin", "Rosa", "Sami", "Tove", "Uma", "Vik", "Wren", "Zia",
)  # fmt: skip
LAST_NAMES = (
    "Inventson", "Madeup", "Fictional", "Notreal", "Placeholder", "Sampleton", "Exampleby",
    "Testwood", "Imaginary", "Pretendly", "Dummer", "Mockford", "Fabley", "Storyfield",
)  # fmt: skip
STREETS = ("Elm Row", "Quarry Lane", "Mill Close", "Harbour View", "Station Road", "Orchard Way")
