"""What only builds the shipped toy models (``lsap/assets/toy32``): the toy GAN's training system,
its image discriminator, weight averaging and callbacks, and the attribute classifier's training.

Used by ``scripts/`` (and their tests); nothing in the library imports this package. The toy data
(``lsap.data.toy``), the classifier network (``lsap.nets.toy_classifier``) and its file format
(``lsap.io.classifier``) stay in the library: the demo and lsap-train's toy experiments use them.
"""
