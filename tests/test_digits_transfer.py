"""The digits transfer demonstration (jaxconv.digits_transfer) at a small scale."""

from jaxconv import digits_transfer


def test_pretraining_on_0_to_4_helps_learning_5_to_9_from_one_label_each():
    """Same steps, same optimizer, same test images (every 5-9 test digit): starting from the
    convolutions learned on 0-4 is at least as good as starting from scratch."""
    budget = digits_transfer.Budget(pretrain_steps=300, finetune_steps=60)
    rows = {row['method']: row for row in digits_transfer.run(1, seeds=3, budget=budget)}
    assert rows['transfer']['top1'] >= rows['scratch']['top1'], rows
    assert rows['scratch']['top1'] > 0.4, rows  # Both learn: chance is 0.2.


def test_transfer_keeps_the_pretrained_convolutions_and_renews_the_top():
    import jax

    pretrained, fresh = digits_transfer._init(5, seed=1), digits_transfer._init(5, seed=2)
    mixed = digits_transfer.transfer_params(pretrained, fresh, reinit=('c5', 'f6'))
    for layer, source in (('c1', pretrained), ('c3', pretrained), ('c5', fresh), ('f6', fresh),
                          ('output', fresh)):
        assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool((a == b).all()), mixed[layer],
                                                source[layer]))), layer
