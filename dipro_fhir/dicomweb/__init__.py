"""Where chest radiographs come from: a DICOMweb server (QIDO-RS / WADO-RS) or a local
folder of DICOM files, behind one :class:`~dipro_fhir.imaging.sources.ImageSource`."""
