from procure_runtime.migrate import run_env
from procure_shipping.models import metadata

run_env(metadata)
