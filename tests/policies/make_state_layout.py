"""Write tests/policies/state_layout/*.npz (see state_layout_cases.py). Run once, at the commit
whose layout the files pin: `.venv/bin/python tests/policies/make_state_layout.py`."""

from __future__ import annotations

from state_layout_cases import CASES, FOLDER, moments, path


def main() -> None:
    FOLDER.mkdir(exist_ok=True)
    for case, make in CASES.items():
        policy = make()
        for moment in moments(policy):
            policy.save(path(case, moment))
    print(f"wrote {len(list(FOLDER.glob('*.npz')))} states to {FOLDER}")


if __name__ == "__main__":
    main()
