# mom in a container: a slim Python base, the wheel built in a first stage, a non-root user, data on a volume,
# and a health check on /readyz. Build with `docker build -t mom .` from the repository root; docs/deploy.md.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY mom ./mom
COPY bench ./bench
COPY web ./web
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && pip wheel --no-cache-dir --wheel-dir /wheels /wheels/mom-*.whl

FROM python:3.11-slim
RUN groupadd --system --gid 10001 mom \
 && useradd --system --uid 10001 --gid mom --home-dir /var/lib/mom --create-home mom \
 && mkdir -p /var/lib/mom/data /certs \
 && chown -R mom:mom /var/lib/mom /certs
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels mom && rm -rf /wheels
USER mom
WORKDIR /var/lib/mom
# A node alone serves on every interface; in a cluster each node binds the address of its cluster-file entry.
ENV MOM_DATA_DIR=/var/lib/mom/data \
    MOM_REST=0.0.0.0:8080 \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/mom/data"]
EXPOSE 8080 50051
# Ready = can serve writes. MOM_HEALTHCHECK_URL names the node's own REST URL when it is not plain
# http on 127.0.0.1:8080 (a cluster node with TLS); MOM_CA_FILE is the CA that signed its certificate.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD python -c "import os, ssl, sys, urllib.request as r; ca = os.environ.get('MOM_CA_FILE'); url = os.environ.get('MOM_HEALTHCHECK_URL', 'http://127.0.0.1:8080/readyz'); sys.exit(0 if r.urlopen(url, timeout=4, context=ssl.create_default_context(cafile=ca) if ca else None).status == 200 else 1)"
ENTRYPOINT ["mom"]
CMD ["serve"]
