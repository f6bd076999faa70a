"""A folder of class folders of JPEGs as a TFDS dataset, so the trainer's pipeline can read it.

The JPEG bytes are stored unchanged (as `imagenet2012`'s are), so the pipeline decodes exactly
the files timm reads. Not registered under a name: build it with `JpegFolder(folder, data_dir=)`.
"""

import os

import tensorflow_datasets as tfds


class JpegFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """`folder`/<class>/*.jpg as one `train` split; classes in sorted order."""

    VERSION = tfds.core.Version('1.0.0')

    def __init__(self, folder: str, **kwargs):
        self._folder = folder
        self._classes = sorted(os.listdir(folder))
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(  # Built directly: see ../shared/notes/env.md, pitfall 7.
            builder=self,
            features=tfds.features.FeaturesDict({
                'image': tfds.features.Image(encoding_format='jpeg'),
                'label': tfds.features.ClassLabel(names=self._classes),
            }),
            supervised_keys=('image', 'label'))

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Local files only.
        return {'train': self._generate_examples()}

    def _generate_examples(self):
        for label in self._classes:
            directory = os.path.join(self._folder, label)
            for name in sorted(os.listdir(directory)):
                yield f'{label}/{name}', {'image': os.path.join(directory, name), 'label': label}
