"""Feature embeddings: each image's pooled features projected to two dimensions.

t-SNE (van der Maaten & Hinton 2008, "Visualizing Data using t-SNE", Sec. 3) places points so
that the Student-t similarities q_ij of the map match the Gaussian similarities p_ij of the
features, minimising KL(P || Q) (their Eq. 2 cost with Eq. 4's q_ij); scikit-learn's Barnes-Hut
implementation does it. PCA, the linear alternative, keeps the two directions of largest variance.
"""

import jax
import numpy as np

from jaxconv.models.features import POOLED, features

METHODS = ('tsne', 'pca')


def extract(model, variables, images: np.ndarray, layer: str = POOLED,
            batch_size: int = 256) -> np.ndarray:
    """(N, D) features of `layer` for `images`, flattened, one jit-compiled pass per batch."""
    forward = jax.jit(lambda v, x: features(model, v, x, layer).reshape(len(x), -1))
    return np.concatenate([np.asarray(forward(variables, images[i:i + batch_size]))
                           for i in range(0, len(images), batch_size)])


def project(features: np.ndarray, method: str = 'tsne', seed: int = 0) -> np.ndarray:
    """(N, 2) coordinates of the rows of `features`."""
    if method == 'pca':
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(features)
    if method == 'tsne':
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        # Perplexity must stay below the number of points; 30 is the paper's and sklearn's default.
        tsne = TSNE(n_components=2, perplexity=min(30.0, (len(features) - 1) / 3), init='pca',
                    random_state=seed)
        # One OpenMP thread: on a busy 2-core machine sklearn's threads waited on each other
        # (and on XLA's) 20x longer than they computed; alone, an eval split takes seconds.
        with threadpool_limits(limits=1, user_api='openmp'):
            return tsne.fit_transform(features)
    raise ValueError(f'unknown projection {method!r}; valid: {", ".join(METHODS)}')
