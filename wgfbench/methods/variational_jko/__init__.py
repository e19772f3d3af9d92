"""The variational JKO of Fan, Zhang, Taghvaei & Chen (ICML 2022), the centrepiece: the method and its training
loop (:mod:`.method`), the duals of each functional (:mod:`.duals`) and their reference measures
(:mod:`.references`)."""

from wgfbench.methods.variational_jko.method import (
    COMPILE_MODES,
    FAN_POROUS_PARAMS,
    VariationalJKO,
    VariationalJKOConfig,
    build_map,
    compile_losses,
)

__all__ = [
    "COMPILE_MODES",
    "FAN_POROUS_PARAMS",
    "VariationalJKO",
    "VariationalJKOConfig",
    "build_map",
    "compile_losses",
]
