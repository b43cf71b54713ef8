"""Credentials: named secrets kept encrypted, decrypted only at run time by
the node that names one (``store.py``), with their pages, their allowed hosts
and the rotation command."""
