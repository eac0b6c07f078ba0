"""The t2 model contract: the facts every stage shares, defined once.

Sources: ../shared/notes/t2-model-contract.md (Allam & McEwen 2021, arXiv:2105.06178;
Allam, Peloton & McEwen 2023, arXiv:2303.08951).
"""
from __future__ import annotations

#: Bands fed to the model, in tensor order (axis 2): index 0 = g, index 1 = r.
BANDS: tuple[str, ...] = ("g", "r")

#: ZTF filter id (``candidate.fid``) -> band name. fid 3 (i) is not used by t2.
ZTF_FID_TO_BAND: dict[int, str] = {1: "g", 2: "r", 3: "i"}

#: Effective wavelengths of the ZTF bands, Å (astronet / fink-science values).
ZTF_WAVELENGTH_A: dict[str, float] = {"g": 4804.79, "r": 6436.92, "i": 7968.22}

#: Number of time steps of the GP grid (model input axis 1).
GRID_LENGTH: int = 100

#: Model input contracts (``input_contract`` in a model's metadata; absent = the first).
#: ``span_grid_v1``: the published t2 input, (N, 100, 2) GP means g, r on a grid from the first
#: to the last detection of the alert, scaled by the metadata rule (per band).
#: ``window_asinh_v2``: (N, 100, 4) on a fixed grid of ``INPUT_WINDOW_DAYS`` ending at the alert:
#: asinh(F / ASINH_FLUX_SCALE) / ASINH_NORM of g and r with one shared scale (colour and
#: brightness kept), zero before the first detection of the window; a mask channel (1 from the
#: first detection on); the alert age (days since jdstarthist) / MAX_INPUT_AGE_DAYS, constant.
INPUT_CONTRACTS: tuple[str, ...] = ("span_grid_v1", "window_asinh_v2")
INPUT_WINDOW_DAYS: float = 30.0  # ZTF prv_candidates carry 30 days of history
ASINH_FLUX_SCALE: float = 100.0  # flux units (zero point 27.5): mag 22.5, below ZTF's 5σ depth
ASINH_NORM: float = 5.0  # asinh of mag ~16 fluxes is ~5
MAX_INPUT_AGE_DAYS: float = 90.0  # the history_too_long cut

#: PLAsTiCC class names in model output order (index -> name).
CLASS_NAMES: tuple[str, ...] = (
    "mu-Lens-Single", "TDE", "EB", "SNII", "SNIax", "Mira", "SNIbc", "KN",
    "M-dwarf", "SNIa-91bg", "AGN", "SNIa", "RRL", "SLSN-I",
)

#: PLAsTiCC numeric class ids in the same order.
PLASTICC_IDS: tuple[int, ...] = (6, 15, 16, 42, 52, 53, 62, 64, 65, 67, 88, 90, 92, 95)

#: SNANA flux zero point: F = 10**(-0.4 * (mag - ZERO_POINT)).
ZERO_POINT: float = 27.5

#: GP hyper-parameters (Matérn-3/2 over time × wavelength).
GP_WAVELENGTH_SCALE_A: float = 6000.0  # fixed ℓ_λ, Å
GP_TIME_SCALE_BOUNDS_DAYS: tuple[float, float] = (1.0, 1000.0)  # ℓ_t bounds, days
GP_TIME_SCALE_START_DAYS: float = 20.0  # ℓ_t initial value of the reference fit, days
GP_LOG_AMPLITUDE_HALF_WIDTH: float = 10.0  # ln A bounds: ln(0.25 s²) ± 10

#: Alert columns of every classify row, score message and filter topic, before the t2 fields:
#: ids, the candidate's position (ra, dec: deg J2000), time (jd) and photometry (magpsf: AB mag,
#: fid: 1 g, 2 r, 3 i): what a follow-up observer needs without fetching the full alert.
ALERT_COLUMNS: tuple[str, ...] = ("objectId", "candid", "ra", "dec", "jd", "magpsf", "fid")

# --- ASTROMER light-curve encoder (issue 12; ../shared/notes/astromer.md) ---------------------
#: Band index fed to the encoder (``EncoderBatch.bands``): 0 = g, 1 = r (the order of ``BANDS``).
#: The single-band v0 encoder is given index 0 whatever the band.
ASTROMER_BAND_INDEX: dict[str, int] = {band: index for index, band in enumerate(BANDS)}
#: ZTF filter id -> encoder band index (i band, fid 3, is not encoded).
ZTF_FID_TO_ASTROMER_BAND: dict[int, int] = {1: 0, 2: 1}
#: v0 window: the first 200 observations by time (the published checkpoints' ``max_obs``).
ASTROMER_V0_MAX_OBS: int = 200
#: Effective positional-encoding base of v0: the configured ``base`` is never applied (notes §4.1).
ASTROMER_V0_PE_BASE: float = 10_000.0
#: Two-band window: the most recent observations of g and r merged by time.
ASTROMER_TWOBAND_MAX_OBS: int = 64
#: Input contracts of an encoder (``input_contract`` in its metadata JSON):
#: ``astromer_v0_first``: one band, first ``max_obs`` points by time, time and magnitude minus the
#: window means; ``astromer_gr_recent``: g and r merged by time, the last ``max_obs`` points, the same.
ASTROMER_INPUT_CONTRACTS: tuple[str, ...] = ("astromer_v0_first", "astromer_gr_recent")
#: Encoder id of our shipped two-band encoder (``fink_t2/data/models/<id>.tflite`` + ``.json``).
ASTROMER_SHIPPED_ENCODER_ID: str = "fink-t2-astromer-gr"
#: Output field of the ASTROMER embedding (enriched alert, score record, ``classify`` table).
EMBEDDING_FIELD: str = "t2_embedding"
