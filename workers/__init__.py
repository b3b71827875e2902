"""Worker-side code: one module per service. Imported by RQ workers only (it needs ifcopenshell)."""
