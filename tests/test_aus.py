import numpy as np
import pytest

from wemgan import aus


def test_names_follow_openface_order():
    assert aus.AU_NAMES == (
        "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
        "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
    )  # fmt: skip
    assert aus.OPENFACE_COLUMNS[0] == "AU01_r" and aus.OPENFACE_COLUMNS[-1] == "AU45_r"
    assert set(aus.AU_DESCRIPTIONS) == set(aus.AU_NAMES)
    assert aus.AU_DESCRIPTIONS["AU12"] == "lip corner puller"
    assert sorted(aus.UPPER_FACE_AUS + aus.LOWER_FACE_AUS) == sorted(aus.AU_NAMES)


def test_openface_scale_round_trip_and_clipping():
    raw = np.array([0.0, 2.5, 5.0, 6.0, -1.0] + [1.0] * 12)
    unit = aus.from_openface(raw)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit[:5], [0, 0.5, 1, 1, 0])
    np.testing.assert_allclose(aus.to_openface(unit[:3]), [0, 2.5, 5])


@pytest.mark.parametrize(
    ("name", "active"),
    [
        ("Happy", {"AU06", "AU12"}),
        ("Sad", {"AU01", "AU04", "AU15"}),
        ("Surprise", {"AU01", "AU02", "AU05", "AU26"}),
        ("Fear", {"AU01", "AU02", "AU04", "AU05", "AU20"}),
        ("Disgust", {"AU09", "AU15"}),
        ("Anger", {"AU04", "AU05", "AU07", "AU23"}),
        ("Contempt", {"AU12", "AU14"}),
    ],
)
def test_presets_carry_their_emfacs_prototype(name, active):
    vector = aus.expression(name)
    named = {n for n, v in zip(aus.AU_NAMES, vector, strict=True) if v >= 0.3}
    assert active <= named, f"{name}: expected {active} among {named}"
    assert ((vector >= 0) & (vector <= 1)).all()


def test_presets_are_the_eight_affectnet_categories_and_read_only():
    assert list(aus.EXPRESSIONS) == ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"]
    assert not aus.EXPRESSIONS["Neutral"].any()
    with pytest.raises(ValueError):
        aus.EXPRESSIONS["Happy"][0] = 1.0
    assert aus.expression(" happy ")[8] == aus.EXPRESSIONS["Happy"][8]
    with pytest.raises(ValueError, match="unknown expression 'Joy'"):
        aus.expression("Joy")


def test_au_vector_accepts_dicts_sequences_and_presets():
    base = np.full(17, 0.25, np.float32)
    vector = aus.au_vector({"au12": 0.8, "AU1": 0.1}, base=base)
    assert vector[aus.AU_NAMES.index("AU12")] == pytest.approx(0.8)
    assert vector[0] == pytest.approx(0.1)
    assert vector[5] == pytest.approx(0.25)
    np.testing.assert_array_equal(aus.au_vector([0.5] * 17), np.full(17, 0.5, np.float32))
    np.testing.assert_array_equal(aus.au_vector("Happy"), aus.EXPRESSIONS["Happy"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"AU99": 0.5}, "unknown Action Unit 'AU99'"),
        ({"smile": 0.5}, "unknown Action Unit 'smile'"),
        ({"AU12": float("nan")}, "must be finite"),
        ({"AU12": 1.5}, "outside"),
        ({"AU12": "a lot"}, "must be a number"),
        ([0.1] * 16, "must hold 17 values"),
        ([0.1] * 16 + [float("inf")], "must be finite"),
    ],
)
def test_au_vector_rejects_malformed_input(spec, message):
    with pytest.raises(ValueError, match=message):
        aus.au_vector(spec)
