"""Lightning wiring: systems (LightningModules), data modules, callbacks. Imports Lightning lazily."""
