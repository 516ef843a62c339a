"""Chapter 6's preference widget: the recorded ranking is fitted when the widget is made (what the static website
shows); the button fits the reader's own ranking; a ranking that gives two completions one place is refused."""

import pytest

from solutions.reward_model import fit_reader_reward
from solutions.widgets import preference_widget

COMPLETIONS = ["excellent .", "great .", "fine .", "awful ."]


def describe(model):
    return " ".join(f"{word}={weight:+.2f}" for word, weight in model.word_weights().items())


def _parts(box):
    menus = [child for child in box.children if hasattr(child, "options")]
    button = next(child for child in box.children if hasattr(child, "on_click"))
    shown = box.children[-1]
    return menus, button, shown


def _weights(shown):
    return {word: float(w) for word, w in (item.split("=") for item in
                                           shown.value.split("<pre>")[1].split("</pre>")[0].split())}


def test_the_recorded_ranking_is_set_in_the_menus_and_fitted(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    box = preference_widget(COMPLETIONS, [0, 1, 2, 3], fit_reader_reward, describe, prompt="the food was")
    menus, _, shown = _parts(box)
    assert [menu.value for menu in menus] == [1, 2, 3, 4]
    assert "Recorded example" in shown.value
    weights = _weights(shown)
    assert weights["excellent"] > weights["great"] > weights["fine"] > weights["awful"]


def test_the_button_fits_the_readers_own_ranking(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    box = preference_widget(COMPLETIONS, [0, 1, 2, 3], fit_reader_reward, describe)
    menus, button, shown = _parts(box)
    for menu, place in zip(menus, (4, 3, 2, 1), strict=True):  # this reader likes complaints best
        menu.value = place
    button.click()
    assert "your ranking" in shown.value
    weights = _weights(shown)
    assert weights["awful"] > weights["fine"] > weights["great"] > weights["excellent"]


def test_two_completions_in_one_place_are_refused_and_nothing_is_fitted(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    calls = []
    box = preference_widget(COMPLETIONS, [0, 1, 2, 3], lambda c, r: calls.append(r) or fit_reader_reward(c, r),
                            describe)
    menus, button, shown = _parts(box)
    menus[1].value = 1
    button.click()
    assert "used more than once" in shown.value and "[1]" in shown.value
    assert len(calls) == 1  # only the recorded example's fit


@pytest.mark.parametrize("ranking", [[0, 1, 2], [0, 1, 2, 2], [0, 1, 2, 4], []])
def test_a_recorded_ranking_that_is_not_a_permutation_is_an_error(ranking):
    with pytest.raises(ValueError, match="recorded_ranking must order all 4 completions"):
        preference_widget(COMPLETIONS, ranking, fit_reader_reward, describe)


def test_while_grading_the_widget_only_says_it_is_not_shown(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    box = preference_widget(COMPLETIONS, [0, 1, 2, 3], fit_reader_reward, describe)
    assert "not shown while grading" in box.children[0].value
