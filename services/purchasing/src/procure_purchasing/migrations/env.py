from procure_purchasing.models import metadata
from procure_runtime.migrate import run_env

run_env(metadata)
