"""`digits`: scikit-learn's copy of the UCI handwritten digits as a TFDS dataset.

1,797 real 8x8 grayscale scans of handwritten digits 0-9 (Alpaydin & Kaynak 1998; the UCI
"Optical Recognition of Handwritten Digits" test set, as bundled in `sklearn.datasets.load_digits`).
Pixel values 0..16 are stored as uint8 0..255 (v * 255 / 16, rounded), shape (8, 8, 1).

Fixed split, by position in sklearn's array: every fifth image (index 4, 9, 14, ...) is `test`
(359 images), the other 1,438 are `train`. The interleave keeps both splits balanced across the
file's writers and classes without a random seed.

It is prepared offline from the files inside scikit-learn, on first use, into any `data_dir`, and
read back through `tfds.builder(...).as_dataset(...)` like cifar10 or imagenet2012.
"""

import numpy as np
import tensorflow_datasets as tfds

TEST_EVERY = 5  # Index i goes to test when i % TEST_EVERY == TEST_EVERY - 1.


def split_indices(num_examples: int) -> dict[str, np.ndarray]:
    """The documented fixed split: positions of the train and test images."""
    index = np.arange(num_examples)
    is_test = index % TEST_EVERY == TEST_EVERY - 1
    return {'train': index[~is_test], 'test': index[is_test]}


class Digits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes)."""

    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'Fixed interleaved split: every fifth image is test.'}

    def _info(self) -> tfds.core.DatasetInfo:
        # Built directly rather than via dataset_info_from_configs, which looks for metadata files
        # next to this module (../shared/notes/env.md, pitfall 7).
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                'image': tfds.features.Image(shape=(8, 8, 1)),
                'label': tfds.features.ClassLabel(num_classes=10),
                'id': np.int32,  # Position in sklearn's array, for tracing an image back.
            }),
            supervised_keys=('image', 'label'),
            homepage='https://archive.ics.uci.edu/dataset/80',
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Nothing to download: the data ships inside scikit-learn.
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
        labels = digits.target.astype(np.int64)
        return {
            split: self._generate_examples(images, labels, index)
            for split, index in split_indices(len(labels)).items()
        }

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray, index: np.ndarray):
        for i in index:
            yield int(i), {'image': images[i], 'label': labels[i], 'id': np.int32(i)}
