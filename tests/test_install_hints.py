"""Install hints name a package pip can find anywhere, not an extra of an uninstalled tdsl."""

from pathlib import Path

from tdsl.wording import install_hint

PACKAGE = Path(__file__).resolve().parent.parent / "tdsl"


def test_no_message_asks_for_an_extra_alone():
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "pip install 'tdsl[" in line or 'pip install "tdsl[' in line
    ]
    assert offenders == []


def test_the_hint_names_the_package_and_the_checkout_form():
    assert install_hint("matplotlib", "plot") == (
        "pip install matplotlib (or pip install -e '.[plot]' in a tdsl checkout)"
    )
