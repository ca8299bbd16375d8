"""Study file -> one frozen, fully validated :class:`Study`.

``schema`` (each setting's type, default and check), ``space`` (the ``[search]``
dimensions), ``goals`` (objectives and constraints), ``settings`` (what a trial is
built from), ``validate`` (the file against the registry), ``load`` (file + plugins).
Imports only the plugin contract below it.
"""

from kdsweep.study.load import load_study
from kdsweep.study.study import Study, StudySettings

__all__ = ["Study", "StudySettings", "load_study"]
