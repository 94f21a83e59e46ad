"""The Adult-like generator: deterministic, Adult's columns, gaps and leading spaces, a learnable label."""

from lamina.tabular.synth import ADULT_CAT_NAMES, ADULT_CONT_NAMES, adult_like


def test_adult_like_shape_gaps_and_determinism():
    df = adult_like(400, seed=3)
    assert len(df) == 400 and df.equals(adult_like(400, seed=3)) and not df.equals(adult_like(400, seed=4))
    assert set(ADULT_CAT_NAMES + ADULT_CONT_NAMES + ["salary", "sex", "native-country"]) <= set(df.columns)
    assert df[["workclass", "occupation", "education-num"]].isna().any().all()
    assert df["education"].str.startswith(" ").all() and set(df["salary"]) == {"<50k", ">=50k"}
    married = df["marital-status"].str.strip() == "Married-civ-spouse"
    assert (df.loc[married, "salary"] == ">=50k").mean() > (df.loc[~married, "salary"] == ">=50k").mean() + 0.2
