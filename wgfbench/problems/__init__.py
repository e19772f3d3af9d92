"""Problems with exact solutions. Each module builds instances; :mod:`wgfbench.registry` names them."""
