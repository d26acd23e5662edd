"""Chest radiograph handling: decode DICOM pixels, pick the frontal view, locate the ten
DiPro regions and crop them (reference §1.6, §7.2)."""
