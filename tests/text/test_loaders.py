"""The language-model stream (contiguous rows, targets shifted by one, shuffled documents, seeded resume) and the
classifier loader (length sorting, chunk-aligned padding)."""

import torch

from lamina.text.loaders import LMDataLoader, SortedDL, pad_batch


def _docs(lengths, start=0):
    out, nxt = [], start
    for n in lengths:
        out.append(torch.arange(nxt, nxt + n))
        nxt += n
    return out


def test_lm_stream_rows_targets_and_batch_count():
    docs = _docs([10, 7, 13, 11])  # 41 tokens: 0..40 in order
    dl = LMDataLoader(docs, bs=4, seq_len=3, device="cpu")
    assert dl.bl == 10 and len(dl) == 4 and dl.last_len == 1
    batches = list(dl)
    assert [tuple(x.shape) for x, _ in batches] == [(4, 3), (4, 3), (4, 3), (4, 1)]
    x = torch.cat([b[0] for b in batches], 1)
    y = torch.cat([b[1] for b in batches], 1)
    assert torch.equal(x, torch.arange(40).view(4, 10))  # row j is the stream's j-th tenth, continued batch to batch
    assert torch.equal(y, x + 1)  # the target is the next token


def test_lm_shuffles_documents_per_epoch_and_repeats_with_the_seed():
    docs = _docs([5] * 12)
    dl = LMDataLoader(docs, bs=2, seq_len=5, shuffle=True, seed=3, device="cpu")
    first = torch.cat([x for x, _ in dl], 1)
    second = torch.cat([x for x, _ in dl], 1)
    assert not torch.equal(first, second)  # a new document order each epoch
    for x in (first, second):  # documents stay whole: each starts at a multiple of 5 in the stream
        stream = torch.cat([x[0], x[1]])
        assert all(int(stream[i]) % 5 == 0 and torch.equal(stream[i:i + 5], stream[i] + torch.arange(5))
                   for i in range(0, 50, 5))
    resumed = LMDataLoader(docs, bs=2, seq_len=5, shuffle=True, seed=3, device="cpu")
    resumed.epochs_seen = 1  # what a checkpoint restores
    assert torch.equal(torch.cat([x for x, _ in resumed], 1), second)
    assert LMDataLoader(docs, bs=2, seq_len=5, device="cpu").new(bs=4).bs == 4


def test_lm_too_little_text_gives_no_batches():
    assert len(LMDataLoader(_docs([3]), bs=4, seq_len=5, device="cpu")) == 0


def test_pad_batch_puts_whole_chunks_first_and_the_rest_after():
    docs = _docs([7, 2, 4], start=2)
    flat = torch.cat(docs)
    lens = torch.tensor([7, 2, 4])
    offsets = torch.tensor([0, 7, 9, 13])
    x = pad_batch(flat, offsets, lens, torch.tensor([0, 1, 2]), pad_idx=1, pad_first=True, seq_len=2)
    assert x.tolist() == [[2, 3, 4, 5, 6, 7, 8],
                          [1, 1, 1, 1, 9, 10, 1],   # 5 pads: two whole chunks first, one after
                          [1, 1, 11, 12, 13, 14, 1]]
    end = pad_batch(flat, offsets, lens, torch.tensor([1, 2]), pad_idx=1, pad_first=False, seq_len=2)
    assert end.tolist() == [[9, 10, 1, 1], [11, 12, 13, 14]]


def test_sorted_dl_validation_goes_longest_first_with_padding():
    docs = _docs([3, 9, 1, 6, 4], start=2)
    targets = torch.tensor([0, 1, 0, 1, 0])
    dl = SortedDL(list(zip(docs, targets)), bs=2, pad_idx=1, seq_len=72, device="cpu")
    assert dl.get_idxs().tolist() == [1, 3, 4, 0, 2]
    batches = list(dl)
    assert [tuple(x.shape) for x, _ in batches] == [(2, 9), (2, 4), (1, 1)]
    x, y = batches[1]
    assert y.tolist() == [0, 0] and (x[1] == 1).sum() == 1  # the length-3 text padded to 4
    assert len(dl) == 3


def test_sorted_dl_training_order_is_random_and_keeps_the_longest_first():
    lengths = [int(n) for n in torch.randint(1, 50, (60,), generator=torch.Generator().manual_seed(0))]
    docs = _docs(lengths, start=2)
    dl = SortedDL(docs, bs=4, shuffle=True, drop_last=True, seed=1, device="cpu")
    orders = [dl.get_idxs(torch.Generator().manual_seed(s)) for s in (1, 2)]
    assert not torch.equal(*orders)
    for order in orders:
        assert sorted(order.tolist()) == list(range(60))  # a permutation
        assert int(order[0]) == max(range(60), key=lambda i: lengths[i])
    batches = list(dl)
    assert len(batches) == len(dl) == 15 and all(len(b) == 1 for b in batches)  # no targets: inputs only
    spreads = [int((x != 1).sum(1).max() - (x != 1).sum(1).min()) for (x,) in batches]
    assert sum(spreads) / len(spreads) < 10  # similar lengths share a batch (random batches would spread ~30)
