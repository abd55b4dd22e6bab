# Sourced by bin/run and bin/manage, so the web server, the worker and every management command
# read the same settings.
#
# 1. A `.env` at the project's root (KEY=VALUE lines, as docker compose reads it; # comments), so
#    "put it in .env" is true outside docker too. A variable already in the environment wins.
# 2. The demo model's address, which bin/local-model writes to var/local-model-host: it is on
#    loopback, where providers may only be where the operator allows (SWITCHYARD_ALLOWED_PROVIDER_HOSTS).
#    Without it `bin/manage check_providers` refused the provider that bin/run was using.

switchyard_environment() {
  local root=$1 file=${SWITCHYARD_ENV_FILE:-$1/.env} line key value taken=()
  if [ -f "$file" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
      line=${line%$'\r'}
      [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
      key=${BASH_REMATCH[2]}
      value=${BASH_REMATCH[3]}
      if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
      [ -n "${!key+set}" ] && continue
      export "$key=$value"
      taken+=("$key")
    done < "$file"
    # Names only: values may be keys.
    [ ${#taken[@]} -gt 0 ] && SWITCHYARD_ENV_TAKEN="${taken[*]} from $file"
  fi
  local host_file="${SWITCHYARD_VAR_DIR:-$root/var}/local-model-host" host
  if [ -f "$host_file" ]; then
    host=$(cat "$host_file")
    case ",${SWITCHYARD_ALLOWED_PROVIDER_HOSTS:-}," in
      *",$host,"*) ;;
      *) export SWITCHYARD_ALLOWED_PROVIDER_HOSTS="${SWITCHYARD_ALLOWED_PROVIDER_HOSTS:+$SWITCHYARD_ALLOWED_PROVIDER_HOSTS,}$host" ;;
    esac
  fi
  return 0
}
