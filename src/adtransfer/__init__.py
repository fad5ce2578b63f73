"""adtransfer: two-stage transfer learning (ImageNet -> FDG PET -> ECD SPECT) for Alzheimer's disease."""

__version__ = "0.1.0"
