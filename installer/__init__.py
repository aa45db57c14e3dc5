"""Build support for the offline installer (see build_installer.py); not part of the app."""
