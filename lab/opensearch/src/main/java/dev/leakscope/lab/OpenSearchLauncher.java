package dev.leakscope.lab;

import java.io.IOException;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.opensearch.action.admin.cluster.health.ClusterHealthRequest;
import org.opensearch.action.admin.cluster.health.ClusterHealthResponse;
import org.opensearch.common.settings.Settings;
import org.opensearch.common.unit.TimeValue;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * Starts one real OpenSearch 2.19.6 node inside this JVM for the leakscope test lab.
 *
 * <p>The official distribution starts nodes through {@code org.opensearch.bootstrap.OpenSearch},
 * which installs a security manager, runs the bootstrap checks and refuses to run as root.
 * None of that is wanted in a throwaway lab node, so this launcher builds the
 * {@link Environment} itself and starts a {@link Node} subclass that loads the
 * transport-netty4 plugin from the classpath (giving the node its HTTP/REST layer and
 * its transport layer). No security plugin is loaded: the REST API is open without
 * credentials, exactly like a misconfigured exposed node.
 *
 * <p>Usage: {@code --host 127.0.10.1 --http-port 9200 --transport-port 9300 --data DIR
 * [--name os-open] [--cluster leakscope-lab]}. The host must be a loopback address.
 * Everything the node writes goes under DIR ({@code DIR/home}, {@code DIR/data},
 * {@code DIR/logs}). Logging goes to stdout. SIGTERM/SIGINT close the node cleanly.
 */
public final class OpenSearchLauncher {

    /**
     * Printed to stdout once the node has started, its HTTP port is bound and cluster health
     * has reached yellow (so existing indices are searchable), or that wait timed out.
     */
    public static final String READY_MARKER = "leakscope-lab: opensearch ready";

    private OpenSearchLauncher() {}

    /** A node whose plugins come from the classpath instead of a plugins/ directory. */
    static final class LabNode extends Node {
        LabNode(Environment environment, Collection<Class<? extends Plugin>> classpathPlugins) {
            // forbidPrivateIndexSettings = true, as for a production node
            super(environment, classpathPlugins, true);
        }
    }

    private static final class Args {
        String host;
        Integer httpPort;
        Integer transportPort;
        Path data;
        String name;
        String cluster = "leakscope-lab";
    }

    private static void usage(String problem) {
        System.err.println("error: " + problem);
        System.err.println("usage: OpenSearchLauncher --host 127.0.10.1 --http-port 9200 --transport-port 9300"
                + " --data /tmp/x/os1 [--name os-open] [--cluster leakscope-lab]");
        System.exit(2);
    }

    private static int port(String flag, String value) {
        try {
            int p = Integer.parseInt(value);
            if (p < 1 || p > 65535) {
                usage(flag + " out of range: " + value);
            }
            return p;
        } catch (NumberFormatException e) {
            usage(flag + " is not a number: " + value);
            return -1; // unreachable
        }
    }

    private static Args parse(String[] argv) {
        Args a = new Args();
        for (int i = 0; i < argv.length; i++) {
            String flag = argv[i];
            if (flag.equals("-h") || flag.equals("--help")) {
                usage("help requested");
            }
            if (i + 1 >= argv.length) {
                usage("missing value for " + flag);
            }
            String v = argv[++i];
            switch (flag) {
                case "--host": a.host = v; break;
                case "--http-port": a.httpPort = port(flag, v); break;
                case "--transport-port": a.transportPort = port(flag, v); break;
                case "--data": a.data = Paths.get(v).toAbsolutePath().normalize(); break;
                case "--name": a.name = v; break;
                case "--cluster": a.cluster = v; break;
                default: usage("unknown argument " + flag);
            }
        }
        if (a.host == null) usage("--host is required");
        if (a.httpPort == null) usage("--http-port is required");
        if (a.transportPort == null) usage("--transport-port is required");
        if (a.data == null) usage("--data is required");
        if (a.httpPort.equals(a.transportPort)) usage("--http-port and --transport-port must differ");
        try {
            // the lab only ever binds loopback addresses
            if (!InetAddress.getByName(a.host).isLoopbackAddress()) {
                usage("--host must be a loopback address (127.0.0.0/8 or ::1): " + a.host);
            }
        } catch (UnknownHostException e) {
            usage("--host does not resolve: " + a.host);
        }
        if (a.name == null) {
            a.name = "os-" + a.host + "-" + a.httpPort;
        }
        return a;
    }

    public static void main(String[] argv) throws Exception {
        Args a = parse(argv);

        // Read by log4j2.properties; must be set before anything touches log4j.
        System.setProperty("leakscope.lab.node", a.name);

        Path home = a.data.resolve("home");
        Path dataPath = a.data.resolve("data");
        Path logs = a.data.resolve("logs");
        Path config = home.resolve("config");
        // An empty modules/ and plugins/ keep PluginsService content: all plugins are classpath ones.
        for (Path p : List.of(config, home.resolve("modules"), home.resolve("plugins"), dataPath, logs)) {
            Files.createDirectories(p);
        }

        Settings settings = Settings.builder()
                .put("cluster.name", a.cluster)
                .put("node.name", a.name)
                .put("path.home", home.toString())
                .put("path.data", dataPath.toString())
                .put("path.logs", logs.toString())
                .put("network.host", a.host)
                .put("http.port", a.httpPort)
                .put("transport.port", a.transportPort)
                .put("discovery.type", "single-node")
                .put("http.type", Netty4Plugin.NETTY_HTTP_TRANSPORT_NAME)
                .put("transport.type", Netty4Plugin.NETTY_TRANSPORT_NAME)
                // lab disks are small and shared; never let disk watermarks block allocation
                .put("cluster.routing.allocation.disk.threshold_enabled", false)
                // small footprint: two processors' worth of thread pools at most
                .put("node.processors", Math.min(2, Runtime.getRuntime().availableProcessors()))
                // write DIR/logs/http.ports and transport.ports once bound
                .put("node.portsfile", true)
                .build();

        Environment env = InternalSettingsPreparer.prepareEnvironment(
                settings, Collections.emptyMap(), config, () -> a.name);

        Collection<Class<? extends Plugin>> plugins = List.of(Netty4Plugin.class);
        final long t0 = System.nanoTime();
        final Node node;
        try {
            node = new LabNode(env, plugins);
        } catch (Throwable t) {
            System.err.println("leakscope-lab: opensearch node could not be created: " + t);
            t.printStackTrace();
            org.apache.logging.log4j.LogManager.shutdown();
            System.exit(1);
            return;
        }

        // Registered before start() so a SIGTERM during startup also closes the node
        // (and unbinds its ports) cleanly.
        final CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("leakscope-lab: stopping opensearch node " + a.name);
            try {
                node.close();
                if (!node.awaitClose(20, TimeUnit.SECONDS)) {
                    System.err.println("leakscope-lab: node did not close within 20s");
                }
            } catch (IOException | InterruptedException e) {
                System.err.println("leakscope-lab: error while closing node: " + e);
            } finally {
                System.out.println("leakscope-lab: opensearch node " + a.name + " stopped");
                System.out.flush();
                // log4j's own shutdown hook is disabled (run.sh) so the node can log while closing
                org.apache.logging.log4j.LogManager.shutdown();
                stopped.countDown();
            }
        }, "leakscope-lab-shutdown"));

        try {
            node.start();
        } catch (Throwable t) {
            // e.g. a port already in use; exit(1) runs the hook above, which closes the node
            System.err.println("leakscope-lab: opensearch failed to start: " + t);
            t.printStackTrace();
            System.exit(1);
            return;
        }

        // HTTP answers from here on, but after a restart on an existing data dir the shards
        // are still recovering; wait for yellow so "ready" means searchable.
        final long httpMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
        String health;
        try {
            ClusterHealthResponse h = node.client().admin().cluster()
                    .health(new ClusterHealthRequest().waitForYellowStatus().timeout(TimeValue.timeValueSeconds(60)))
                    .actionGet();
            health = h.getStatus().name().toLowerCase(java.util.Locale.ROOT) + (h.isTimedOut() ? "(timed-out)" : "");
        } catch (RuntimeException e) {
            health = "unknown(" + e + ")";
        }
        System.out.printf("%s name=%s http=%s:%d transport=%s:%d data=%s http_ms=%d ready_ms=%d health=%s%n",
                READY_MARKER, a.name, a.host, a.httpPort, a.host, a.transportPort, a.data,
                httpMs, TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0), health);
        System.out.flush();

        // OpenSearch's own threads may all be daemons; keep the JVM up until shutdown.
        Thread keepAlive = new Thread(() -> {
            try {
                stopped.await();
            } catch (InterruptedException ignored) {
                Thread.currentThread().interrupt();
            }
        }, "leakscope-lab-keepalive");
        keepAlive.setDaemon(false);
        keepAlive.start();
    }
}
