"""The package version, in one place: ``chainrule.__version__``, model files, the build."""

__version__ = "0.1.0"
