"""TextDataLoaders factories: from_folder (IMDB's layout), from_csv (tokens cached beside the file), is_lm."""

import pytest
import torch

from lamina.text.all import (DataBlock, RandomSplitter, TextBlock, TextDataLoaders, set_seed, synth_review_folder,
                             synth_reviews)


def test_from_folder_like_imdb(tmp_path, capsys):
    path = synth_review_folder(tmp_path / "imdb", n=80, unsup=10)
    dls = TextDataLoaders.from_folder(path, valid="test", bs=8)
    assert dls.vocab[1] == ["neg", "pos"] and dls.c == 2
    assert len(dls.train_ds) == 60 and len(dls.valid_ds) == 20  # train/ and test/ only, not unsup/
    x, y = dls.one_batch()
    assert x.dtype == torch.long and x.shape[0] == 8 and y.shape == (8,)
    assert (x[:, -1] != 1).any()  # padding is not all at the end (chunks go first)
    dls.show_batch(max_n=2)
    out = capsys.readouterr().out
    assert "category" in out and "xxbos" in out
    assert (tmp_path / "imdb_tok").is_dir()  # the tokens are cached beside the folder
    assert dls.test_dl(["A great film.", "An awful film."]).one_batch()[0].shape[0] == 2


def test_from_csv_caches_beside_the_file_and_builds_language_model_data(tmp_path):
    synth_reviews(60).to_csv(tmp_path / "texts.csv", index=False)
    dls = TextDataLoaders.from_csv(tmp_path, "texts.csv", text_col="text", label_col="label", valid_col="is_valid",
                                   bs=8)
    assert list((tmp_path / "texts_tok").glob("tokens-*.npz"))
    assert dls.vocab[1] == ["negative", "positive"]
    set_seed(0)
    lm = TextDataLoaders.from_csv(tmp_path, "texts.csv", text_col="text", is_lm=True, valid_pct=0.2, bs=4,
                                  seq_len=12)
    x, y = lm.one_batch()
    assert x.shape == (4, 12) and torch.equal(x[:, 1:], y[:, :-1]) and lm.vocab == lm.text_vocab
    with pytest.raises(FileNotFoundError, match="No CSV file"):
        TextDataLoaders.from_csv(tmp_path, "missing.csv")


def test_data_block_loader_options(tmp_path, reviews):
    dblock = DataBlock(blocks=TextBlock.from_df("text", is_lm=True), get_x=lambda r: r["text"],
                       splitter=RandomSplitter(0.1, seed=0))
    dls = dblock.dataloaders(reviews, bs=4, seq_len=7)
    assert dls.train.seq_len == 7 and dls.one_batch()[0].shape == (4, 7)
    with pytest.raises(TypeError, match="Unknown arguments \\['sqe_len'\\]"):
        dblock.dataloaders(reviews, sqe_len=7)
