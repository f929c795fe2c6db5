"""Parity handlers, one module per component.

Each module may define:
  KINDS: {kind_name: handler(case)}            for index.json kinds it checks;
  MANIFESTS: {manifest_file_name: builder()}    for `state_dict_manifest` cases, where
      builder() returns {section: nn.Module} (state_dict() and parameters() are compared); section is "" for a flat manifest
      (campplus.json, rmvpe.json, ...) or "cfm"/"length_regulator" for the DiT presets.
"""
