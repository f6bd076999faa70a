"""Looking inside trained ConvNets: views of any run's checkpoint (`python -m jaxconv.inspect`).

- units.py: first-layer filters (Krizhevsky et al. 2012, Fig. 3), activation maps, and the eval
  patches that excite a channel most (Zeiler & Fergus 2014, Fig. 2);
- attribution.py: occlusion sensitivity (Zeiler & Fergus 2014, Sec. 4.2), saliency (Simonyan et
  al. 2014, Sec. 3.1) and Grad-CAM (Selvaraju et al. 2017, Eqs. 1-2);
- synthesis.py: class-score maximisation (Simonyan et al. 2014, Sec. 2, Eq. 1; blur from
  Yosinski et al. 2015);
- adversarial.py: FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018, Eq. 2);
- embedding.py: t-SNE (van der Maaten & Hinton 2008) or PCA of pooled features;
- run.py: restoring a run (`load_run`) and its images; receptive_field.py: where units look;
  views.py: each view's figure; figures.py: drawing and saving; __main__.py: the CLI.

Activations come from `jaxconv.models.features`, which works for any linen model.
"""
