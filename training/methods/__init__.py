"""The paper's methods that only training needs: loss weightings (`weighting`: average,
DWA, uncertainty, automatic), LWS's NES assignment step and weight step (`lws`) with its
route tree (`lws_routes`), and the iteration-based multi-task batch sampler (`sampler`)."""
