exec 3<>"/dev/tcp/127.0.0.1/19966" || exit 1
printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
response=$(timeout 2 cat <&3 | tr -d '\r')
exec 3<&-
status=${response%%$'\n'*} body=${response##*$'\n'}
echo "GET /readyz: $status $body"
[[ $status =~ ^HTTP/[0-9.]+\ 200 ]] && exit 0
rest=${body//\"no KONE token or no WebSocket connection\"/}
if [[ $status =~ ^HTTP/[0-9.]+\ 503 && $rest != "$body" && $rest =~ \"reasons\":\[,*\] ]]; then
  echo "ready but for KONE: KONE is down or refuses this worker (see KoneUnreachable)"
  exit 0
fi
exit 1
