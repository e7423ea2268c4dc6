"""The model layer: each network of the pipeline with its fixed parts and its model file.

* :mod:`facetwin.models.files` — the one place model files are written and read;
* :mod:`facetwin.models.coarse` — the coarse model (encoder + head model + camera + renderer),
  its loss-input assembly and its model file.

Room for ``detail.py`` (the detail MAE) and ``person.py`` (person-specific transfer). Layers:
``models`` sits above networks / headmodel / rendering / losses / geometry and below
``training``, ``inference`` and ``evaluation``; it never imports the training package.
"""
