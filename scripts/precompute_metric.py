"""Precompute the perceptual metric M(theta) for the FTM drum data set; same as `psmexp-precompute`.

    PYTHONPATH=. python scripts/precompute_metric.py perceptual=stft data.total_size=2000 data.test_size=200
See psmexp/precompute.py for the options and the output layout.
"""
from psmexp.precompute import main

if __name__ == "__main__":
    main()
